//! axum integration for [watchpost](https://docs.rs/watchpost).
//!
//! # Start here
//!
//! - [`routes`] returns a [`Router`] with the health probes, to
//!   [`merge`](Router::merge) into yours.
//! - [`RateLimitLayer`] limits requests per client IP (reading the peer
//!   address from axum's [`ConnectInfo`], so serve with
//!   `into_make_service_with_connect_info::<SocketAddr>()`).
//! - [`ClientIp`] extracts the client address, resolved through trusted
//!   proxies exactly as the rate limiter does.
//! - [`CatchPanicLayer`] turns a panicking handler into a 500 and an alert,
//!   and keeps the server serving (see
//!   [`watchpost_tower::catch_panic`]).
//! - [`HttpMonitorLayer`] raises one incident when the 5xx rate or p95
//!   latency goes wrong, per matched route, and logs slow requests.
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{routing::get, Router};
//! use watchpost::checks::fn_check;
//! use watchpost::health::HealthChecks;
//! use watchpost::ratelimit::RateLimiter;
//! use watchpost_axum::{ClientIp, RateLimitLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthChecks::builder()
//!     .readiness("db", fn_check(|| async { true }))
//!     .build()?;
//! let limiter = RateLimiter::per_ip("120/min".parse()?)
//!     .route("/api/chat", "10/min".parse()?)
//!     .exempt_health(&health);
//! let app = Router::new()
//!     .route("/", get(|ClientIp(ip): ClientIp| async move { format!("hello {ip}") }))
//!     .merge(watchpost_axum::routes(health))
//!     .layer(RateLimitLayer::new(limiter));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! Everything behaves exactly as in the actix-web and tower adapters: the
//! shared conformance suite checks it.
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
use watchpost::client_ip::ClientIpResolver;
use watchpost::health::HealthChecks;
pub use watchpost_tower::{CatchPanicLayer, HealthService, ResolvedClientIp};

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
/// the peer address from axum's `ConnectInfo`.
///
/// ```
/// use watchpost::ratelimit::RateLimiter;
/// use watchpost_axum::RateLimitLayer;
///
/// fn rate_limit() -> Result<RateLimitLayer, watchpost::ratelimit::QuotaError> {
///     Ok(RateLimitLayer::new(RateLimiter::per_ip("60/min".parse()?)))
/// }
/// # rate_limit().unwrap();
/// ```
pub type RateLimitLayer = watchpost_tower::RateLimitLayer<ConnectInfoPeer>;

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

/// The tower [`HttpMonitorLayer`](watchpost_tower::HttpMonitorLayer),
/// naming routes by axum's [`MatchedPath`]: one incident when the 5xx rate
/// or p95 latency goes wrong, slow requests logged (see
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
/// use watchpost::alert::Alerter;
/// use watchpost::health::HealthChecks;
/// use watchpost::monitor::HttpMonitor;
/// use watchpost_axum::HttpMonitorLayer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::from_env()?;
/// let health = HealthChecks::builder().build()?;
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
///     .layer(HttpMonitorLayer::new(HttpMonitor::new(&alerter)?))
///     .merge(watchpost_axum::routes(health));
/// # Ok(()) }
/// ```
pub type HttpMonitorLayer = watchpost_tower::HttpMonitorLayer<MatchedPathRoute>;

/// The client's IP address, resolved through trusted proxies.
///
/// Under [`RateLimitLayer`] it is the address the limiter counted; without
/// it, the address is resolved with the default [`ClientIpResolver`]
/// (loopback and private ranges trusted). Without a peer address (the server
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
        if let Some(ResolvedClientIp(ip)) = parts.extensions.get::<ResolvedClientIp>() {
            return Ok(ClientIp(*ip));
        }
        let peer = peer_addr(&parts.extensions).ok_or(MissingPeerAddr)?;
        Ok(ClientIp(
            ClientIpResolver::new().resolve(peer, &parts.headers),
        ))
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
