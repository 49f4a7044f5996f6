//! [`WatchpostLayer`]: everything a [`Watchpost`]'s application is wrapped
//! in, in the right order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use watchpost::alert::Alerter;
use watchpost::monitor::HttpMonitor;
use watchpost::panic::{CatchScope, CatchUnwind};
use watchpost::ratelimit::{Outcome, RateLimiter, Verdict, VerdictFuture};
use watchpost::Watchpost;

use crate::catch_panic::{panic_response, report};
use crate::monitor::{NoRoute, Pending, RoutePattern};
use crate::rate_limit::{self, PeerAddr, SocketAddrPeer};

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
    limiter: Option<Arc<RateLimiter>>,
    peer: P,
    monitor: HttpMonitor,
    routes: R,
    alerter: Alerter,
}

impl<P: Clone, R: Clone> Clone for WatchpostLayer<P, R> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            peer: self.peer.clone(),
            monitor: self.monitor.clone(),
            routes: self.routes.clone(),
            alerter: self.alerter.clone(),
        }
    }
}

impl<P, R> fmt::Debug for WatchpostLayer<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchpostLayer")
            .field("limiter", &self.limiter)
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
        Self {
            limiter: wp.app_rate_limiter().cloned().map(Arc::new),
            peer,
            monitor: wp.monitor().clone(),
            routes,
            alerter: wp.alerter().clone(),
        }
    }
}

impl<S, P: Clone, R: Clone> Layer<S> for WatchpostLayer<P, R> {
    type Service = WatchpostService<S, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        WatchpostService {
            inner,
            limiter: self.limiter.clone(),
            peer: self.peer.clone(),
            monitor: self.monitor.clone(),
            routes: self.routes.clone(),
            alerter: Some(self.alerter.clone()),
        }
    }
}

/// The service made by [`WatchpostLayer`]: the rate limit, the monitor and
/// the catch-panic scope of [`RateLimit`], [`Monitor`] and [`CatchPanic`]
/// in one service with one response future, so that the inner service's
/// future is wrapped once (three nested layers would each move it into a
/// future of their own). Requests get the same answers, headers, alerts
/// and counts as with the three layers.
///
/// [`RateLimit`]: crate::RateLimit
/// [`Monitor`]: crate::Monitor
/// [`CatchPanic`]: crate::CatchPanic
pub struct WatchpostService<S, P = SocketAddrPeer, R = NoRoute> {
    inner: S,
    limiter: Option<Arc<RateLimiter>>,
    peer: P,
    monitor: HttpMonitor,
    routes: R,
    alerter: Option<Alerter>,
}

impl<S: Clone, P: Clone, R: Clone> Clone for WatchpostService<S, P, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            peer: self.peer.clone(),
            monitor: self.monitor.clone(),
            routes: self.routes.clone(),
            alerter: self.alerter.clone(),
        }
    }
}

impl<S: fmt::Debug, P, R> fmt::Debug for WatchpostService<S, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchpostService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl<S, P, R> WatchpostService<S, P, R> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, R: RoutePattern> WatchpostService<S, P, R> {
    /// The monitor's timing and the inner call in the request's catch
    /// scope, once the rate limit let the request through.
    fn start<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
        outcome: Option<Outcome>,
    ) -> Kind<Self, Request<ReqBody>, S::Future, ResBody, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: From<Bytes>,
    {
        let record = Pending::start(&self.monitor, &self.routes, &req);
        let scope =
            CatchScope::for_http_request(req.method(), req.uri()).alerter(self.alerter.as_ref());
        let inner = &mut self.inner;
        match scope.run(|| inner.call(req)) {
            Ok(future) => Kind::Running {
                future: scope.wrap(future),
                outcome,
                record,
            },
            Err(panicked) => {
                report(&panicked, self.alerter.as_ref());
                let mut response = panic_response();
                if let Some(record) = record {
                    record.record(500, true);
                }
                if let Some(outcome) = outcome {
                    outcome.write_headers(response.headers_mut());
                }
                Kind::Done {
                    response: Some(response),
                }
            }
        }
    }
}

impl<S, P, R, ReqBody, ResBody> Service<Request<ReqBody>> for WatchpostService<S, P, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
    P: PeerAddr,
    R: RoutePattern,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = WatchpostFuture<Self, Request<ReqBody>, S::Future, ResBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let outcome = match &self.limiter {
            None => None,
            Some(limiter) => match rate_limit::check(limiter, &self.peer, &mut req) {
                Verdict::Ready(outcome) if outcome.is_rejected() => {
                    let response = rate_limit::rejected(&outcome, &req);
                    return WatchpostFuture {
                        kind: Kind::Done {
                            response: Some(response),
                        },
                    };
                }
                Verdict::Ready(outcome) => Some(outcome),
                Verdict::Pending(check) => {
                    // Counts in a shared store: take the service
                    // `poll_ready` prepared (leaving a clone) and wait.
                    let clone = self.clone();
                    let service = std::mem::replace(self, clone);
                    return WatchpostFuture {
                        kind: Kind::Waiting {
                            waiting: Box::new((check, Some((service, req)))),
                        },
                    };
                }
            },
        };
        WatchpostFuture {
            kind: self.start(req, outcome),
        }
    }
}

/// The response's rate-limit headers and the monitor's record.
fn finish<B, E, R: RoutePattern>(
    mut output: Result<Response<B>, E>,
    outcome: Option<Outcome>,
    record: Option<Pending<R>>,
) -> Result<Response<B>, E> {
    if let Some(record) = record {
        record.record_output(&output);
    }
    if let (Ok(response), Some(outcome)) = (&mut output, outcome) {
        outcome.write_headers(response.headers_mut());
    }
    output
}

pin_project! {
    /// Response future of [`WatchpostService`]: `W` (the service) and `Q`
    /// (the request) wait in it while a shared store decides; `F` is the
    /// inner future.
    pub struct WatchpostFuture<W, Q, F, B, R: RoutePattern> {
        #[pin]
        kind: Kind<W, Q, F, B, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<W, Q, F, B, R: RoutePattern> {
        // The store is deciding (boxed: a round trip dwarfs it); then
        // `Running` or `Done`.
        Waiting { waiting: Box<(VerdictFuture, Option<(W, Q)>)> },
        // The inner future, each poll in the request's catch scope.
        Running {
            #[pin]
            future: CatchUnwind<F>,
            outcome: Option<Outcome>,
            record: Option<Pending<R>>,
        },
        // Answered without the inner future (429, or `call` panicked).
        Done { response: Option<Response<B>> },
    }
}

impl<W, Q, F, B, R: RoutePattern> fmt::Debug for WatchpostFuture<W, Q, F, B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchpostFuture").finish_non_exhaustive()
    }
}

impl<S, P, R, ReqBody, B, E> Future
    for WatchpostFuture<WatchpostService<S, P, R>, Request<ReqBody>, S::Future, B, R>
where
    S: Service<Request<ReqBody>, Response = Response<B>, Error = E> + Clone,
    B: From<Bytes>,
    P: PeerAddr,
    R: RoutePattern,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let KindProj::Waiting { waiting } = self.as_mut().project().kind.project() {
            let (check, waiting) = &mut **waiting;
            let outcome = match Pin::new(check).poll(cx) {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => return Poll::Pending,
            };
            let Some((mut service, req)) = waiting.take() else {
                panic!("`WatchpostFuture` polled after completion");
            };
            let next = if outcome.is_rejected() {
                Kind::Done {
                    response: Some(rate_limit::rejected(&outcome, &req)),
                }
            } else {
                service.start(req, Some(outcome))
            };
            self.as_mut().project().kind.set(next);
        }
        match self.project().kind.project() {
            KindProj::Running {
                mut future,
                outcome,
                record,
            } => {
                let output = match future.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(output)) => output,
                    Poll::Ready(Err(panicked)) => {
                        future.scope().report(&panicked);
                        Ok(panic_response())
                    }
                };
                Poll::Ready(finish(output, outcome.take(), record.take()))
            }
            KindProj::Done { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("`WatchpostFuture` polled after completion"),
            },
            // Left above, once the store has answered.
            KindProj::Waiting { .. } => panic!("`WatchpostFuture` polled after completion"),
        }
    }
}
