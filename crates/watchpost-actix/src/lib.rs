//! actix-web integration for [watchpost](https://docs.rs/watchpost).
//!
//! # Start here
//!
//! - [`configure`] mounts the health probes with
//!   [`App::configure`](actix_web::App::configure).
//! - [`RateLimit`] limits requests per client IP, with `App::wrap`.
//! - [`CatchPanic`] turns a panicking handler into a 500 and an alert, and
//!   keeps the worker serving, with `App::wrap`.
//! - [`HttpMonitor`] raises one incident when the 5xx rate or p95 latency
//!   goes wrong, per matched route, and logs slow requests, with `wrap`.
//!
//! ```
//! use actix_web::{web, App, HttpServer};
//! use watchpost::checks::fn_check;
//! use watchpost::health::HealthChecks;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthChecks::builder()
//!     .readiness("db", fn_check(|| async { true }))
//!     .build()?;
//! let server = HttpServer::new(move || {
//!     App::new()
//!         .route("/", web::get().to(|| async { "hello" }))
//!         .configure(watchpost_actix::configure(health.clone()))
//! });
//! # let _ = server; Ok(()) }
//! ```
//!
//! The probes behave exactly as described in
//! [`HealthChecks::respond`](watchpost::health::HealthChecks::respond), the
//! same as in the axum and tower adapters.
//!
//! For graceful shutdown, disable actix's own signal handling and stop the
//! server when [`HealthChecks::shutdown_signal`](watchpost::health::HealthChecks::shutdown_signal)
//! resolves (readiness has then answered 503 for the drain delay):
//!
//! ```no_run
//! # use std::time::Duration;
//! # use actix_web::{App, HttpServer};
//! # use watchpost::health::HealthChecks;
//! # async fn run(health: HealthChecks) -> std::io::Result<()> {
//! let h = health.clone();
//! let server = HttpServer::new(move || App::new().configure(watchpost_actix::configure(h.clone())))
//!     .disable_signals()
//!     .bind(("127.0.0.1", 3000))?
//!     .run();
//! let handle = server.handle();
//! actix_web::rt::spawn(async move {
//!     health.shutdown_signal(Duration::from_secs(5)).await;
//!     handle.stop(true).await;
//! });
//! server.await
//! # }
//! ```
//!
//! # Feature flags
//!
//! This crate has no feature flags of its own.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod catch_panic;
mod monitor;
mod rate_limit;

pub use catch_panic::{CatchPanic, CatchPanicMiddleware};
pub use monitor::{HttpMonitor, HttpMonitorFuture, HttpMonitorMiddleware};
pub use rate_limit::{RateLimit, RateLimitMiddleware, ResolvedClientIp};

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use watchpost::health::{HealthChecks, ProbeRequest, ProbeResponse};

/// Registers the probe routes (`/livez`, `/readyz`, `/healthz` and
/// `/<probe>/{name}`, or the paths configured on the builder), answering
/// every method (so that other methods get the same 405 as in other
/// adapters).
///
/// ```
/// use actix_web::{test, web, App};
/// use watchpost::checks::fn_check;
/// use watchpost::health::HealthChecks;
///
/// # #[actix_web::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let health = HealthChecks::builder()
///     .readiness("db", fn_check(|| async { false }))
///     .build()?;
/// let app = test::init_service(
///     App::new()
///         .route("/", web::get().to(|| async { "hello" }))
///         .configure(watchpost_actix::configure(health)),
/// )
/// .await;
/// let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
/// assert_eq!(res.status(), 503);
/// let cache = res.headers().get("cache-control").and_then(|v| v.to_str().ok());
/// assert_eq!(cache, Some("no-store"));
/// # Ok(()) }
/// ```
pub fn configure(health: HealthChecks) -> impl Fn(&mut ServiceConfig) + Clone {
    move |cfg: &mut ServiceConfig| {
        for base in health.probe_paths() {
            let health = health.clone();
            cfg.service(
                web::resource([base.to_owned(), format!("{base}/{{name}}")]).to(
                    move |req: HttpRequest| {
                        let health = health.clone();
                        async move { respond(&health, &req).await }
                    },
                ),
            );
        }
    }
}

async fn respond(health: &HealthChecks, req: &HttpRequest) -> HttpResponse {
    let query = req.query_string();
    let probe = ProbeRequest::new(req.method().as_str(), req.path())
        .query((!query.is_empty()).then_some(query))
        .authorization(req.headers().get("authorization").map(|v| v.as_bytes()));
    into_response(health.respond(probe).await)
}

fn into_response(probe: ProbeResponse) -> HttpResponse {
    let status = StatusCode::from_u16(probe.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    for header in probe.headers() {
        builder.insert_header(header);
    }
    builder.body(probe.into_body())
}
