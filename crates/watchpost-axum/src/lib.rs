//! axum integration for [watchpost](https://docs.rs/watchpost).
//!
//! # Start here
//!
//! Build a [`Watchpost`] once, then, with [`WatchpostExt`] in scope:
//!
//! - [`routes`](WatchpostExt::routes) is the probes (`/livez`, `/readyz`,
//!   `/healthz`, `/{probe}/{check}`) as a [`Router`] to
//!   [`merge`](Router::merge).
//! - [`layers`](WatchpostExt::layers) wraps the whole router (add it last,
//!   after the merge, so unknown paths go through it too) in everything
//!   the handle provides, in the right order: its application-wide rate
//!   limit (if set; the probes exempt), the HTTP monitor (per matched
//!   route; the probes not counted), and catching panics (a panicking
//!   handler answers 500, one alert goes out, serving goes on).
//! - [`rate_limit`](WatchpostExt::rate_limit) is a per-client limit for one
//!   route and method: `post(chat).route_layer(wp.rate_limit(q))` counts
//!   only `POST`s that reach the handler (never a `GET`'s 405, never a
//!   404).
//! - [`serve`] serves the router with the peer address (the rate limiter
//!   needs it) and graceful shutdown: readiness 503 on SIGTERM, the drain
//!   delay, in-flight requests finished. Dropping the handle after it
//!   flushes pending alerts.
//!
//! ```no_run
//! use axum::routing::{get, post};
//! use watchpost::{checks::fn_check, Watchpost};
//! use watchpost_axum::WatchpostExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let wp = Watchpost::from_env()?
//!     .readiness("db", fn_check(|| async { true /* a query through your pool */ }))
//!     .rate_limit("120/min".parse()?)
//!     .build()?;
//! let app = axum::Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/api/chat", post(|| async { "hi" }).route_layer(wp.rate_limit("10/min".parse()?)))
//!     .merge(wp.routes())
//!     .layer(wp.layers());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! watchpost_axum::serve(listener, app, &wp).await?;
//! # Ok(()) }
//! ```
//!
//! The pieces, for routers built by hand: [`routes`] (the probes of any
//! [`HealthChecks`]), [`RateLimitLayer`], [`MonitorLayer`],
//! [`CatchPanicLayer`] and the [`ClientIp`] extractor (the client address,
//! resolved through trusted proxies exactly as the rate limiter does).
//!
//! Everything behaves exactly as in the actix-web and tower adapters: the
//! shared conformance suites check it.
//!
//! # Feature flags
//!
//! This crate has no feature flags of its own.

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::Extensions;
use axum::Router;
use tower_layer::Layer;
pub use watchpost::client_ip::ResolvedClientIp;
use watchpost::health::HealthChecks;
use watchpost::monitor::HttpMonitor;
use watchpost::ratelimit::{Quota, RateLimiter};
use watchpost::Watchpost;
pub use watchpost_tower::{CatchPanicLayer, HealthService};

/// The layers of a [`Watchpost`] for axum, from
/// [`WatchpostExt::layers`]: its rate limit, the monitor naming routes by
/// [`MatchedPath`], and catching panics.
pub type Layers = watchpost_tower::WatchpostLayer<ConnectInfoPeer, MatchedPathRoute>;

/// What a [`Watchpost`] gives an axum application. See the
/// [crate docs](crate) for the whole setup.
pub trait WatchpostExt: sealed::Sealed {
    /// The layers to put on the whole router with [`Router::layer`], last
    /// (after merging the probes, so that unknown paths' 404s go through
    /// them too): the application-wide rate limit (if the handle has one;
    /// the probes exempt), the HTTP monitor (the probes not counted) and
    /// catching panics, in that order from the outside.
    fn layers(&self) -> Layers;

    /// The probes, to [`merge`](Router::merge) before `.layer(wp.layers())`.
    fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S>;

    /// A per-client limit of `quota` for one route and method: put it on
    /// the method's handler with
    /// [`MethodRouter::route_layer`](axum::routing::MethodRouter::route_layer)
    /// (`post(chat).route_layer(wp.rate_limit(q))`), so other methods, 405s
    /// and 404s are never counted. On the handle's clock, trusted proxies
    /// and shared state; see [`Watchpost::rate_limiter`] to refine it (per
    /// user, per API key) and [`RateLimitLayer::new`] to mount that.
    fn rate_limit(&self, quota: Quota) -> RateLimitLayer;
}

impl WatchpostExt for Watchpost {
    fn layers(&self) -> Layers {
        watchpost_tower::WatchpostLayer::with(self, ConnectInfoPeer, MatchedPathRoute)
    }

    fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        routes(self.health().clone())
    }

    fn rate_limit(&self, quota: Quota) -> RateLimitLayer {
        RateLimitLayer::new(self.rate_limiter(quota))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for watchpost::Watchpost {}
}

/// Serves `app` on `listener` the way a [`Watchpost`] needs: with each
/// connection's peer address (without it the rate limiter can't tell
/// clients apart) and with graceful shutdown on Ctrl-C or SIGTERM
/// (readiness answers 503 at once, the server keeps serving for the drain
/// delay, then stops once in-flight requests are done).
///
/// # Errors
///
/// What `axum::serve` returns: an I/O error of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    wp: &Watchpost,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(wp.shutdown_signal())
    .await
}

/// A router answering the probe paths (`/livez`, `/readyz`, `/healthz` and
/// `/<probe>/{name}`, or the paths configured on the builder), for any router
/// state `S`.
///
/// Merge it after the application's layers that should not see probes
/// (the HTTP monitor: a probe's 503 is a signal, not an error), and before
/// the rate limiter (which exempts the probes with
/// [`exempt_health`](watchpost::ratelimit::RateLimiter::exempt_health)).
///
/// ```
/// use axum::{routing::get, Router};
/// use watchpost::checks::fn_check;
/// use watchpost::health::HealthChecks;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let health = HealthChecks::builder()
///     .readiness("db", fn_check(|| async { true }))
///     .build()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .merge(watchpost_axum::routes(health));
/// # let _ = app; Ok(()) }
/// ```
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

/// Reads the peer address from axum's [`ConnectInfo<SocketAddr>`], or in
/// tests from [`MockConnectInfo<SocketAddr>`] or a plain `SocketAddr`
/// extension.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectInfoPeer;

impl watchpost_tower::PeerAddr for ConnectInfoPeer {
    fn peer_addr(&self, extensions: &Extensions) -> Option<IpAddr> {
        peer_addr(extensions)
    }
}

fn peer_addr(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| addr.ip())
        })
        .or_else(|| extensions.get::<SocketAddr>().map(SocketAddr::ip))
}

/// The tower [`RateLimitLayer`](watchpost_tower::RateLimitLayer), reading
/// the peer address from axum's `ConnectInfo`: 429 with `Retry-After` and
/// the `RateLimit` headers over quota, the quota headers on allowed
/// responses.
///
/// Put it where it should count: on the whole router with
/// [`Router::layer`], or on one route and method with
/// [`MethodRouter::route_layer`](axum::routing::MethodRouter::route_layer),
/// which never counts other methods' 405s or 404s (a
/// `MethodRouter::layer` would count the 405s too).
///
/// ```
/// use axum::routing::{get, post};
/// use watchpost::ratelimit::RateLimiter;
/// use watchpost_axum::RateLimitLayer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let chat = RateLimitLayer::new(RateLimiter::per_ip("10/min".parse()?));
/// let app: axum::Router = axum::Router::new()
///     .route("/api/chat", post(|| async { "hi" }).route_layer(chat))
///     .route("/", get(|| async { "hello" }));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer(watchpost_tower::RateLimitLayer<ConnectInfoPeer>);

impl RateLimitLayer {
    /// A layer applying `limiter`.
    pub fn new(limiter: RateLimiter) -> Self {
        Self(watchpost_tower::RateLimitLayer::with_peer_addr(
            limiter,
            ConnectInfoPeer,
        ))
    }

    /// The limiter.
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.0.limiter()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = watchpost_tower::RateLimit<S, ConnectInfoPeer>;

    fn layer(&self, inner: S) -> Self::Service {
        self.0.layer(inner)
    }
}

/// Reads the route pattern axum matched (`/users/{id}`) from the request's
/// [`MatchedPath`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MatchedPathRoute;

impl watchpost_tower::RoutePattern for MatchedPathRoute {
    type Route = MatchedPath;

    fn route(&self, extensions: &Extensions) -> Option<MatchedPath> {
        extensions.get::<MatchedPath>().cloned()
    }

    fn as_str(route: &MatchedPath) -> &str {
        route.as_str()
    }
}

/// The tower [`MonitorLayer`](watchpost_tower::MonitorLayer), naming
/// routes by axum's [`MatchedPath`]: one incident when the 5xx rate or p95
/// latency goes wrong, slow requests logged (see
/// [`watchpost::monitor::HttpMonitor`]).
///
/// Add it with [`Router::layer`] so every route is wrapped (and matched),
/// and merge the health probes *after* it: their 503s are signals to the
/// load balancer, not server errors. Requests no route matches reach it
/// only through a [`fallback`](Router::fallback) added before `.layer(..)`
/// (axum's default 404 skips route layers): add one to count them as
/// requests, as the actix-web middleware does.
///
/// ```
/// use axum::{http::StatusCode, routing::get, Router};
/// use watchpost::Watchpost;
/// use watchpost_axum::MonitorLayer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let wp = Watchpost::from_env()?.build()?;
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
///     .layer(MonitorLayer::new(wp.monitor().clone()))
///     .merge(watchpost_axum::routes(wp.health().clone()));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MonitorLayer(watchpost_tower::MonitorLayer<MatchedPathRoute>);

impl MonitorLayer {
    /// A layer feeding `monitor`.
    pub fn new(monitor: HttpMonitor) -> Self {
        Self(watchpost_tower::MonitorLayer::with_routes(
            monitor,
            MatchedPathRoute,
        ))
    }
}

impl<S> Layer<S> for MonitorLayer {
    type Service = watchpost_tower::Monitor<S, MatchedPathRoute>;

    fn layer(&self, inner: S) -> Self::Service {
        self.0.layer(inner)
    }
}

/// The client's IP address, resolved through trusted proxies.
///
/// Under [`RateLimitLayer`] it is the address the limiter counted; without
/// one, the address is resolved with the
/// [process default](watchpost::client_ip::ClientIpResolver::make_process_default) resolver:
/// the [`Watchpost`]'s trusted proxies, or loopback and private ranges. Without a peer address (the server
/// isn't serving with `ConnectInfo`), extraction fails with 500 and a
/// message saying so: that's a server setup error, not a client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Rejection of [`ClientIp`]: the server doesn't provide the peer address.
#[derive(Debug)]
#[non_exhaustive]
pub struct MissingPeerAddr;

impl MissingPeerAddr {
    /// The status code: 500.
    pub fn status(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The body text.
    pub fn body_text(&self) -> String {
        "the server does not provide the peer address: serve with \
         `into_make_service_with_connect_info::<SocketAddr>()`"
            .to_owned()
    }
}

impl axum::response::IntoResponse for MissingPeerAddr {
    fn into_response(self) -> axum::response::Response {
        (self.status(), self.body_text()).into_response()
    }
}

impl std::fmt::Display for MissingPeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body_text())
    }
}

impl std::error::Error for MissingPeerAddr {}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = MissingPeerAddr;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let found = parts.extensions.get::<ResolvedClientIp>();
        if let Some(ResolvedClientIp(ip)) = found {
            return Ok(ClientIp(*ip));
        }
        let peer = peer_addr(&parts.extensions).ok_or(MissingPeerAddr)?;
        Ok(ClientIp(ResolvedClientIp::get_or_resolve(
            None,
            peer,
            &parts.headers,
        )))
    }
}

/// `Option<ClientIp>` never rejects.
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <ClientIp as FromRequestParts<S>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}
