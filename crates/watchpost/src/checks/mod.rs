//! Built-in checks: HTTP, TCP connect, and closures; Postgres through the
//! application's sqlx pool (`PostgresCheck`, feature `postgres`).
//!
//! See [`crate::health`] for how checks are registered and run. Each has its own timeout on top of the registry's, so it is safe to call on
//! its own too.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use watchpost::checks::{fn_check, HttpCheck, TcpCheck};
//! use watchpost::health::HealthChecks;
//!
//! let health = HealthChecks::builder()
//!     .readiness("payments", HttpCheck::get("https://payments.internal/health")?
//!         .expect_status(200..=299)
//!         .body_contains("ok"))
//!     .readiness("search", TcpCheck::new("127.0.0.1:9200"))
//!     .liveness("event-loop", fn_check(|| async { true }))
//!     .build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "http-check")]
mod http;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod tcp;

pub use crate::health::check::{fn_check, FnCheck};
#[cfg(feature = "http-check")]
pub use http::{HttpCheck, HttpCheckError};
#[cfg(feature = "postgres")]
pub use postgres::PostgresCheck;
#[cfg(feature = "redis")]
pub use redis::RedisCheck;
pub use tcp::TcpCheck;
