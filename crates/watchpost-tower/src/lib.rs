//! tower integration for [watchpost](https://docs.rs/watchpost): health
//! probes for any tower stack (hyper, axum, tonic, …).
//!
//! # Start here
//!
//! - [`HealthService`] answers `/livez`, `/readyz`, `/healthz`,
//!   `/<probe>/<check>` with exactly the behaviour described in
//!   [`watchpost::health::HealthChecks::respond`].
//!
//! # Examples
//!
//! ```
//! use http::{Request, StatusCode};
//! use http_body_util::Empty;
//! use tower::ServiceExt;
//! use watchpost::checks::fn_check;
//! use watchpost::health::HealthChecks;
//! use watchpost_tower::HealthService;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthChecks::builder()
//!     .readiness("db", fn_check(|| async { true }))
//!     .build()?;
//! let res = HealthService::new(health)
//!     .oneshot(Request::get("/readyz").body(Empty::<bytes::Bytes>::new())?)
//!     .await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! This crate has no feature flags of its own.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod health;

pub use health::{HealthService, ResponseFuture};
