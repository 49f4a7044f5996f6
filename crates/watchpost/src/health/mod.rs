//! Health checks that tell the truth, served on Kubernetes' `/livez`,
//! `/readyz` and `/healthz` convention.
//!
//! - **Real checks.** A [`Check`] does a dependency's round trip (a query,
//!   a `PING`, an HTTP call). Closures work through
//!   [`fn_check`](crate::checks::fn_check); HTTP and TCP checks are built in
//!   ([`checks`](crate::checks)).
//! - **Concurrent and bounded.** A probe runs its checks concurrently, each
//!   under its own timeout (default 2 s); a check that hangs is dropped and
//!   reported failed, one that panics is reported `"check panicked"`.
//! - **Can't hammer the database.** Concurrent probes share one run of each
//!   check, and results are reused for [`cache_for`](HealthChecksBuilder::cache_for)
//!   (default 1 s): a thousand probe requests cause one query. Runs of a
//!   check never overlap. In [background mode](HealthChecksBuilder::background)
//!   every check is refreshed on an interval and probes only read the
//!   snapshot: with an alerter attached (a [`Watchpost`](crate::Watchpost)'s
//!   checks) always, on watchpost's thread, every 10 s.
//! - **Honest answers.** `fail` answers HTTP 503, never 200 with
//!   `"ok": false`; a failing [non-critical](CheckSpec::non_critical) check
//!   gives `warn` and 200. [`fail_after`](HealthChecksBuilder::fail_after) and
//!   [`recover_after`](HealthChecksBuilder::recover_after) keep one lost
//!   packet from flapping the status.
//! - **No leaks.** Bodies carry check names and statuses; error text is
//!   logged, and shown only as the [`Details`] policy allows.
//! - **Alerts.** [`alert_on_failure`](HealthChecksBuilder::alert_on_failure)
//!   (what a handle does) fires an incident when a check goes down
//!   (thresholds applied) and resolves it when the check comes back, with
//!   no probe traffic needed: the checks then run in the background.
//! - **Graceful shutdown.** [`HealthChecks::shutdown_signal`] flips readiness
//!   to 503 on SIGTERM and waits a drain delay before the server stops.
//!
//! The HTTP behaviour (paths, methods, query parameters, statuses, headers,
//! bodies) lives here in [`HealthChecks::respond`], so the axum, actix-web and
//! tower adapters answer identically.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use watchpost::checks::{fn_check, HttpCheck};
//! use watchpost::health::{HealthChecks, Probe, ProbeRequest, Status};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthChecks::builder()
//!     .readiness("postgres", fn_check(|| async {
//!         // e.g. sqlx::query("SELECT 1 FROM users LIMIT 1").execute(&pool).await
//!         Ok::<(), std::io::Error>(())
//!     }))
//!     .readiness("upstream", HttpCheck::get("http://127.0.0.1:9/health")?)
//!     .liveness("worker", fn_check(|| async { true }))
//!     .timeout(Duration::from_secs(2))
//!     .cache_for(Duration::from_secs(5))
//!     .build()?;
//!
//! // Adapters call this for you; here it is by hand.
//! let res = health.respond(ProbeRequest::new("GET", "/readyz")).await;
//! assert_eq!(res.status(), 503); // nothing listens on port 9
//! assert_eq!(health.evaluate(Probe::Liveness).await.status(), Status::Pass);
//! # Ok(()) }
//! ```

mod alerts;
mod builder;
pub(crate) mod check;
mod http;
mod registry;
mod report;
mod shutdown;

pub use builder::{BuildError, CheckSpec, Details, HealthChecksBuilder, Probe, Token};
pub use check::{Check, CheckResult, IntoCheckResult, Status};
pub use http::{ProbeRequest, ProbeResponse, HEALTH_JSON};
pub use registry::HealthChecks;
pub use report::{CheckReport, Report, StatusChange};

#[cfg(test)]
mod tests;
