//! [`WatchpostLayer`]: everything a [`Watchpost`]'s application is wrapped
//! in, in the right order.

use std::fmt;

use tower_layer::Layer;
use watchpost::Watchpost;

use crate::catch_panic::{CatchPanic, CatchPanicLayer};
use crate::monitor::{Monitor, MonitorLayer, NoRoute, RoutePattern};
use crate::rate_limit::{PeerAddr, RateLimit, RateLimitLayer, SocketAddrPeer};

/// The layers of a [`Watchpost`], outermost first: the application-wide
/// rate limit (if the handle has one; the probes exempt), the HTTP
/// monitor, and catching panics (a handler's panic answers 500 and is
/// alerted; the monitor counts it as a panic, not in the 5xx rate).
///
/// Wrap the whole service in it, probes included
/// ([`HealthService`](crate::HealthService) on the probe paths): the rate
/// limit exempts them and the monitor doesn't count them.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use watchpost::Watchpost;
/// use watchpost_tower::WatchpostLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let wp = Watchpost::builder().rate_limit("60/min".parse()?).build()?;
/// let app = ServiceBuilder::new()
///     .layer(WatchpostLayer::new(&wp))
///     .service(service_fn(|_req: Request<String>| async {
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
///     }));
/// let mut req = Request::new(String::new());
/// req.extensions_mut().insert(std::net::SocketAddr::from(([203, 0, 113, 9], 50000)));
/// let res = app.oneshot(req).await?;
/// assert_eq!(res.status(), StatusCode::OK);
/// assert!(res.headers().contains_key("ratelimit"));
/// # Ok(()) }
/// ```
pub struct WatchpostLayer<P = SocketAddrPeer, R = NoRoute> {
    rate_limit: RateLimitLayer<P>,
    monitor: MonitorLayer<R>,
    catch_panic: CatchPanicLayer,
}

impl<P: Clone, R: Clone> Clone for WatchpostLayer<P, R> {
    fn clone(&self) -> Self {
        Self {
            rate_limit: self.rate_limit.clone(),
            monitor: self.monitor.clone(),
            catch_panic: self.catch_panic.clone(),
        }
    }
}

impl<P, R> fmt::Debug for WatchpostLayer<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchpostLayer")
            .field("rate_limit", &self.rate_limit)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl WatchpostLayer {
    /// The layers of `wp`, reading the peer address from a `SocketAddr`
    /// request extension and knowing no route names.
    pub fn new(wp: &Watchpost) -> Self {
        Self::with(wp, SocketAddrPeer, NoRoute)
    }
}

impl<P: PeerAddr, R: RoutePattern> WatchpostLayer<P, R> {
    /// The layers of `wp`, finding the peer address with `peer` and route
    /// names with `routes` (what `watchpost-axum` does with `ConnectInfo`
    /// and `MatchedPath`).
    pub fn with(wp: &Watchpost, peer: P, routes: R) -> Self {
        let rate_limit = match wp.app_rate_limiter() {
            Some(limiter) => RateLimitLayer::with_peer_addr(limiter.clone(), peer),
            None => RateLimitLayer::disabled(peer),
        };
        Self {
            rate_limit,
            monitor: MonitorLayer::with_routes(wp.monitor().clone(), routes),
            catch_panic: CatchPanicLayer::new().alerter(wp.alerter()),
        }
    }
}

impl<S, P: Clone, R: Clone> Layer<S> for WatchpostLayer<P, R> {
    type Service = RateLimit<Monitor<CatchPanic<S>, R>, P>;

    fn layer(&self, inner: S) -> Self::Service {
        self.rate_limit
            .layer(self.monitor.layer(self.catch_panic.layer(inner)))
    }
}
