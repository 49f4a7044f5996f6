//! actix-web integration for [watchpost](https://docs.rs/watchpost).
//!
//! # Start here
//!
//! Build a [`Watchpost`](watchpost::Watchpost) once, before `HttpServer::new`, then, with
//! [`WatchpostExt`] in scope, in each worker's `App`:
//!
//! - [`layers`](WatchpostExt::layers): everything the handle provides, in
//!   the right order (its application-wide rate limit if set, the probes
//!   exempt; the HTTP monitor, the probes not counted; catching panics),
//!   in one [`App::wrap`](actix_web::App::wrap) around the whole app.
//! - [`probes`](WatchpostExt::probes): the health probes, for
//!   [`App::configure`](actix_web::App::configure).
//! - [`rate_limit`](WatchpostExt::rate_limit): a per-client limit for one
//!   route and method, with `Route::wrap`, so other methods' 405s are
//!   never counted.
//! - [`serve`] runs the server with graceful shutdown: readiness 503 on
//!   SIGTERM, the drain delay, then a graceful stop.
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use watchpost::{checks::fn_check, Watchpost};
//! use watchpost_actix::WatchpostExt;
//!
//! # #[actix_web::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let wp = Watchpost::from_env()?
//!     .readiness("db", fn_check(|| async { true /* a query through your pool */ }))
//!     .rate_limit("120/min".parse()?)
//!     .build()?;
//! let (w, chat) = (wp.clone(), wp.rate_limit("10/min".parse()?));
//! let server = HttpServer::new(move || {
//!     App::new()
//!         .wrap(w.layers())
//!         .configure(w.probes())
//!         .route("/", web::get().to(|| async { "hello" }))
//!         .route("/api/chat", web::post().to(|| async { "hi" }).wrap(chat.clone()))
//! });
//! watchpost_actix::serve(server.bind(("127.0.0.1", 3000))?, &wp).await?;
//! # Ok(()) }
//! ```
//!
//! The pieces, for apps put together by hand: [`configure`] (the probes of
//! any [`HealthChecks`]), and the [`RateLimit`], [`Monitor`] and
//! [`CatchPanic`] middleware.
//!
//! The probes behave exactly as described in
//! [`HealthChecks::respond`](watchpost::health::HealthChecks::respond), the
//! same as in the axum and tower adapters; the conformance suites check
//! every response and alert against them.
//!
//! # Feature flags
//!
//! This crate has no feature flags of its own.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod catch_panic;
mod layers;
mod monitor;
mod rate_limit;

pub use catch_panic::{CatchPanic, CatchPanicMiddleware};
pub use layers::{serve, Layers, LayersMiddleware, WatchpostExt};
pub use monitor::{Monitor, MonitorFuture, MonitorMiddleware};
pub use rate_limit::{RateLimit, RateLimitMiddleware};
pub use watchpost::client_ip::ResolvedClientIp;

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
///
/// Each probe is a [`web::scope`] on its static path: the application's
/// other requests pass them with a static prefix compare each (wherever
/// they are registered) instead of matching two dynamic patterns per probe,
/// and route names (`match_pattern`) stay those of the application.
pub fn configure(health: HealthChecks) -> impl Fn(&mut ServiceConfig) + Clone {
    move |cfg: &mut ServiceConfig| {
        for base in health.probe_paths() {
            let probe = |health: HealthChecks| {
                move |req: HttpRequest| {
                    let health = health.clone();
                    async move { respond(&health, &req).await }
                }
            };
            cfg.service(
                web::scope(base)
                    .service(web::resource("").to(probe(health.clone())))
                    .service(web::resource("/{name}").to(probe(health.clone()))),
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
