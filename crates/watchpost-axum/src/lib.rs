//! axum integration for [watchpost](https://docs.rs/watchpost).
//!
//! # Start here
//!
//! [`routes`] returns a [`Router`] with the health probes, to
//! [`merge`](Router::merge) into yours:
//!
//! ```
//! use axum::{routing::get, Router};
//! use watchpost::checks::fn_check;
//! use watchpost::health::HealthChecks;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthChecks::builder()
//!     .readiness("db", fn_check(|| async { true }))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(watchpost_axum::routes(health));
//! # let _ = app; Ok(()) }
//! ```
//!
//! The probes behave exactly as described in
//! [`HealthChecks::respond`](watchpost::health::HealthChecks::respond), the
//! same as in the actix-web and tower adapters.
//!
//! # Feature flags
//!
//! This crate has no feature flags of its own.

#![cfg_attr(docsrs, feature(doc_cfg))]

use axum::Router;
use watchpost::health::HealthChecks;
pub use watchpost_tower::HealthService;

/// A router answering the probe paths (`/livez`, `/readyz`, `/healthz` and
/// `/<probe>/{name}`, or the paths configured on the builder), for any router
/// state `S`.
///
/// # Panics
///
/// When merged into a router that already has one of the probe paths, as
/// [`Router::merge`] does for any overlapping route.
pub fn routes<S>(health: HealthChecks) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let service = HealthService::new(health.clone());
    health
        .probe_paths()
        .into_iter()
        .fold(Router::new(), |router, base| {
            router
                .route_service(base, service.clone())
                .route_service(&format!("{base}/{{name}}"), service.clone())
        })
}
