//! watchpost makes a Rust web service safe to run in production from day one.
//!
//! This is the core crate: framework-free, it speaks in plain values. The
//! adapters `watchpost-axum`, `watchpost-actix` and `watchpost-tower`
//! translate them into each framework's types, with identical behaviour.
//!
//! # Start here
//!
//! [`Watchpost`] is the one value a service builds at startup: alerts
//! from the environment, the panic hook, health checks run in the
//! background, the HTTP monitor, rate limiting and shared state, on one
//! thread and one [`Clock`]. The adapters hand out its parts (`layers()`,
//! the probe routes, per-route limits):
//!
//! ```
//! use watchpost::checks::fn_check;
//! use watchpost::Watchpost;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let wp = Watchpost::from_env()?
//!     .readiness("db", fn_check(|| async { true /* a query through your pool */ }))
//!     .rate_limit("120/min".parse()?)
//!     .build()?;
//! println!("{}", wp.status()); // watchpost is running: thread watchpost; alerts to log; ...
//! # Ok(()) }
//! ```
//!
//! The parts, each usable on its own:
//!
//! - [`health`]: checks that do real round trips, run concurrently under
//!   timeouts, cached so probes can't hammer the database, served as
//!   `/livez`, `/readyz` and `/healthz` with 503 on failure.
//! - [`checks`]: the built-in checks (HTTP, TCP, closures).
//! - [`alert`]: alerts to Telegram, webhooks (Alertmanager JSON, Slack,
//!   Discord) and the log that never block or fail the caller, deduplicated,
//!   once per incident, delivered by their own thread.
//! - [`panic`](mod@panic): a panic hook that gets the alert out before the process
//!   dies, and the pieces adapters use to turn handler panics into 500s.
//! - [`ratelimit`] and [`client_ip`]: per-IP rate limiting with the client
//!   address resolved through trusted proxies only, bounded memory, and
//!   counts shared between replicas through a [`ratelimit::RateLimitStore`]
//!   (Redis, with `watchpost-redis`).
//! - [`monitor`]: incidents for patterns: the 5xx rate and p95 latency of
//!   HTTP routes, heartbeats for jobs and worker loops, thresholds on
//!   gauges; all on an injectable clock, so tests run in virtual time.
//!
//! - [`shared`]: state shared by replicas (Redis, with `watchpost-redis`),
//!   given to a handle in one line.
//!
//! How the pieces fit, and which threads run what: `docs/architecture.md`
//! in the repository.
//!
//! # Feature flags
//!
//! | feature | default | what it enables |
//! |---|---|---|
//! | `http-check` | yes | [`checks::HttpCheck`], on reqwest with rustls |
//! | `telegram` | yes | `alert::TelegramSink`, on reqwest with rustls |
//! | `webhook` | yes | `alert::WebhookSink` (Alertmanager JSON, Slack, Discord) |
//! | `sentry` | no | `alert::SentrySink`: alerts and panics (with stack traces) as events to Sentry, GlitchTip or any Sentry-compatible server |
//! | `postgres` | no | `checks::PostgresCheck`: a query through the application's sqlx `PgPool`, reporting pool saturation; `watchpost::sqlx` (0.8) re-exported |
//! | `redis` | no | `checks::RedisCheck`: PING through the application's redis `ConnectionManager`; `watchpost::redis` (1.x) re-exported |
//! | `tracing-layer` | no | `alert::AlertLayer`: ERROR events become alerts |
//! | `test-util` | no | `alert::MemorySink`, to assert on alerts in tests |
//!
//! Checks need a Tokio runtime with the time driver (any `#[tokio::main]`
//! or actix-web runtime has one).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod alert;
pub mod client_ip;
mod clock;
mod engine;
mod handle;
pub mod health;
mod loud;
pub mod monitor;
pub mod panic;
pub mod ratelimit;
pub mod shared;

pub mod checks;

pub use clock::{Clock, Elapsed, ManualClock, Sleep, Timeout};

/// The sqlx that [`checks::PostgresCheck`] takes a pool of (0.8): build
/// the pool with `watchpost::sqlx::postgres::PgPoolOptions`, or depend on
/// `sqlx = "0.8"` yourself (a `cargo add sqlx` today picks 0.9, whose
/// `PgPool` is another type).
#[cfg(feature = "postgres")]
pub use sqlx;

pub use handle::{SharedStatus, Status, Watchpost, WatchpostBuilder, SHARED_STATE_INCIDENT};
/// The redis crate that [`checks::RedisCheck`] takes a connection manager
/// of (1.x).
#[cfg(feature = "redis")]
pub use redis;
