//! actix-web integration for [watchpost](https://docs.rs/watchpost).
//!
//! # Start here
//!
//! Build a [`Watchpost`](watchpost::Watchpost) once, before `HttpServer::new`, then, with
//! [`WatchpostExt`] in scope, in each worker's `App`:
//!
//! - [`layers`](WatchpostExt::layers): everything the handle provides, in
//!   the right order (the health probes, answered before the router sees
//!   them; its application-wide rate limit if set; the HTTP monitor;
//!   catching panics), in one [`App::wrap`](actix_web::App::wrap) around
//!   the whole app.
//! - [`probes`](WatchpostExt::probes): the health probes alone, for
//!   [`App::configure`](actix_web::App::configure) in an app that doesn't
//!   wrap the layers.
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
//!         .wrap(w.layers()) // the probes too
//!         .route("/", web::get().to(|| async { "hello" }))
//!         .route("/api/chat", web::post().to(|| async { "hi" }).wrap(chat.clone()))
//! });
//! watchpost_actix::serve(server.bind(("127.0.0.1", 3000))?, &wp).await?;
//! # Ok(()) }
//! ```
//!
//! The pieces, for apps put together by hand: [`configure`] (the probes of
//! any [`HealthChecks`]), and the [`RateLimit`], [`Monitor`] and
//! [`CatchPanic`] middleware. [`ClientIp`] is the client address as a
//! handler argument.
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
pub use rate_limit::{RateLimit, RateLimitFuture, RateLimitMiddleware};
pub use watchpost::client_ip::ResolvedClientIp;

use std::future::{ready, Ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage};

/// The client's IP address, resolved through trusted proxies, as a handler
/// argument.
///
/// Under [`RateLimit`] it is the address the limiter counted; without it,
/// the address is resolved with the
/// [process default](watchpost::client_ip::ClientIpResolver::make_process_default)
/// resolver: the [`Watchpost`](watchpost::Watchpost)'s trusted proxies, or
/// loopback and private ranges. Without a peer address (a request built by
/// hand in a test) extraction fails with 500 and a message saying so.
///
/// ```
/// use actix_web::{test, web, App};
/// use watchpost_actix::ClientIp;
///
/// # #[actix_web::main]
/// # async fn main() {
/// let app = test::init_service(App::new().route(
///     "/whoami",
///     web::get().to(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
/// ))
/// .await;
/// let req = test::TestRequest::get()
///     .uri("/whoami")
///     .peer_addr("10.0.0.1:40000".parse().unwrap()) // nginx, trusted
///     .insert_header(("x-forwarded-for", "203.0.113.9"))
///     .to_request();
/// let body = test::call_and_read_body(&app, req).await;
/// assert_eq!(body, "203.0.113.9");
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl FromRequest for ClientIp {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = req.extensions().get::<ResolvedClientIp>().copied();
        ready(match (found, req.peer_addr()) {
            (Some(ResolvedClientIp(ip)), _) => Ok(ClientIp(ip)),
            (None, Some(peer)) => Ok(ClientIp(ResolvedClientIp::get_or_resolve(
                None,
                peer.ip(),
                &rate_limit::ActixHeaders(req.headers()),
            ))),
            (None, None) => Err(actix_web::error::ErrorInternalServerError(
                "the server does not provide the peer address",
            )),
        })
    }
}

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
