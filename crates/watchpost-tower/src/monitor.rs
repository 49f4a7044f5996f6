//! [`MonitorLayer`]: feeds a [`watchpost::monitor::HttpMonitor`] with
//! every request's status and latency, for the 5xx-rate and latency
//! incidents and the slow request log.
//!
//! Per request the layer reads the clock twice and adds one or two relaxed
//! atomics; the route pattern (from a [`RoutePattern`]) is kept only to
//! name the route of a 5xx or a slow request. Latency is measured until the
//! response head is ready, not until its body is sent. A service error
//! counts as a 500; a request whose future is dropped before it completes
//! (the client went away) is not counted. A 500 that
//! [`CatchPanicLayer`](crate::CatchPanicLayer) answered for a panic (it
//! carries [`CaughtPanic`]) is counted as a request but not in the 5xx
//! rate: the panic is alerted on its own, so one bug gives one message.
//!
//! Probe answers are deliberate 503s, not server errors: requests to the
//! probes' paths are not counted (see
//! [`HttpMonitor::watches`](watchpost::monitor::HttpMonitor::watches)), so
//! the layer can wrap the whole application, probes included.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use watchpost::alert::{Alerter, LogSink};
//! use watchpost::monitor::HttpMonitor;
//! use watchpost_tower::MonitorLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let alerter = Alerter::builder().sink(LogSink::new()).build()?;
//! let monitor = HttpMonitor::new(&alerter)?;
//!
//! let svc = ServiceBuilder::new()
//!     .layer(MonitorLayer::new(monitor.clone())) // no router: no route names
//!     .service(service_fn(|_req: Request<String>| async {
//!         let mut res = Response::new(Full::new(Bytes::from("upstream down")));
//!         *res.status_mut() = StatusCode::BAD_GATEWAY;
//!         Ok::<_, Infallible>(res)
//!     }));
//! svc.oneshot(Request::new(String::new())).await?;
//! assert_eq!(monitor.snapshot().errors, 1);
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Extensions, Method, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use watchpost::monitor::{HttpMonitor, RequestStart};
use watchpost::panic::CaughtPanic;

/// Finds the matched route pattern (`/users/{id}`) of a request, for the
/// monitor's per-route figures. Never the raw path: that would make one
/// "route" per user id.
///
/// The default, [`NoRoute`], knows none (plain tower has no router);
/// `watchpost-axum` provides one that reads axum's `MatchedPath`.
pub trait RoutePattern: Clone + Send + Sync + 'static {
    /// What is kept from the request until its response (cheap to keep:
    /// axum's `MatchedPath` is an `Arc`).
    type Route: Send + 'static;

    /// The request's route, if a router matched one.
    fn route(&self, extensions: &Extensions) -> Option<Self::Route>;

    /// The pattern as text.
    fn as_str(route: &Self::Route) -> &str;
}

/// No route known: 5xx are counted under "other routes", slow requests are
/// logged as `(unmatched)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRoute;

impl RoutePattern for NoRoute {
    type Route = std::convert::Infallible;

    fn route(&self, _: &Extensions) -> Option<Self::Route> {
        None
    }

    fn as_str(route: &Self::Route) -> &str {
        match *route {}
    }
}

/// Records every request's status and latency into an [`HttpMonitor`]. See
/// the [module docs](crate::monitor).
pub struct MonitorLayer<R = NoRoute> {
    monitor: HttpMonitor,
    routes: R,
}

impl<R: Clone> Clone for MonitorLayer<R> {
    fn clone(&self) -> Self {
        Self {
            monitor: self.monitor.clone(),
            routes: self.routes.clone(),
        }
    }
}

impl<R> fmt::Debug for MonitorLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorLayer")
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl MonitorLayer {
    /// A layer feeding `monitor`, knowing no route names ([`NoRoute`]).
    pub fn new(monitor: HttpMonitor) -> Self {
        Self::with_routes(monitor, NoRoute)
    }
}

impl<R: RoutePattern> MonitorLayer<R> {
    /// A layer feeding `monitor`, finding routes with `routes`.
    pub fn with_routes(monitor: HttpMonitor, routes: R) -> Self {
        Self { monitor, routes }
    }
}

impl<S, R: Clone> Layer<S> for MonitorLayer<R> {
    type Service = Monitor<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Monitor {
            inner,
            monitor: self.monitor.clone(),
            routes: self.routes.clone(),
        }
    }
}

/// The service made by [`MonitorLayer`].
pub struct Monitor<S, R = NoRoute> {
    inner: S,
    monitor: HttpMonitor,
    routes: R,
}

impl<S: Clone, R: Clone> Clone for Monitor<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            monitor: self.monitor.clone(),
            routes: self.routes.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for Monitor<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("inner", &self.inner)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Monitor<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RoutePattern,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = MonitorFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let record = Pending::start(&self.monitor, &self.routes, &req);
        MonitorFuture {
            inner: self.inner.call(req),
            record,
        }
    }
}

/// A request being timed, until its response is recorded.
pub(crate) struct Pending<R: RoutePattern> {
    monitor: HttpMonitor,
    start: RequestStart,
    method: Method,
    route: Option<R::Route>,
    routes: PhantomData<fn() -> R>,
}

impl<R: RoutePattern> Pending<R> {
    /// Starts timing `req`, unless it is a health probe (its 503 is a
    /// signal, not an error).
    pub(crate) fn start<B>(monitor: &HttpMonitor, routes: &R, req: &Request<B>) -> Option<Self> {
        if !monitor.watches(req.uri().path()) {
            return None;
        }
        Some(Pending {
            start: monitor.start(),
            monitor: monitor.clone(),
            method: req.method().clone(),
            route: routes.route(req.extensions()),
            routes: PhantomData,
        })
    }

    /// Records the response `output` of the request (a service error
    /// counts as a 500; a caught panic as a panic).
    pub(crate) fn record_output<B, E>(self, output: &Result<Response<B>, E>) {
        let (status, panicked) = match output {
            Ok(res) => (
                res.status().as_u16(),
                res.extensions().get::<CaughtPanic>().is_some(),
            ),
            Err(_) => (500, false),
        };
        self.record(status, panicked);
    }

    pub(crate) fn record(self, status: u16, panicked: bool) {
        let route = self.route;
        let name = || route.as_ref().map(R::as_str);
        if panicked {
            self.monitor
                .record_panic(self.start, self.method.as_str(), name);
        } else {
            self.monitor
                .record(self.start, status, self.method.as_str(), name);
        }
    }
}

pin_project! {
    /// The response future of [`Monitor`].
    pub struct MonitorFuture<F, R: RoutePattern> {
        #[pin]
        inner: F,
        record: Option<Pending<R>>,
    }
}

impl<F: fmt::Debug, R: RoutePattern> fmt::Debug for MonitorFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, R, B, E> Future for MonitorFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: RoutePattern,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some(pending) = this.record.take() {
            pending.record_output(&output);
        }
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::Full;
    use tower::{service_fn, ServiceBuilder, ServiceExt};
    use watchpost::alert::{Alerter, MemorySink};
    use watchpost::monitor::ManualClock;

    use super::*;

    #[derive(Clone, Default)]
    struct HeaderRoute;

    #[derive(Clone)]
    struct Pattern(&'static str);

    impl RoutePattern for HeaderRoute {
        type Route = Pattern;
        fn route(&self, extensions: &Extensions) -> Option<Pattern> {
            extensions.get::<Pattern>().cloned()
        }
        fn as_str(route: &Pattern) -> &str {
            route.0
        }
    }

    async fn answer(req: Request<String>) -> Result<Response<Full<Bytes>>, &'static str> {
        match req.uri().path() {
            "/fail" => Err("backend gone"),
            path => {
                let status = path.trim_start_matches('/').parse().unwrap_or(200);
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok(res)
            }
        }
    }

    #[tokio::test]
    async fn statuses_and_errors_are_counted_with_their_routes() {
        let manual = ManualClock::new();
        let sink = MemorySink::new();
        let alerter = Alerter::builder().sink(sink.clone()).build().unwrap();
        let monitor = watchpost::monitor::HttpMonitor::builder(&alerter)
            .clock(manual.clock())
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(MonitorLayer::with_routes(monitor.clone(), HeaderRoute))
            .service(service_fn(answer));
        for path in ["/200", "/404", "/429", "/500", "/503", "/fail"] {
            let mut req = Request::get(path).body(String::new()).unwrap();
            req.extensions_mut().insert(Pattern("/{status}"));
            let _ = svc.clone().oneshot(req).await;
        }
        // A request without a matched route.
        let _ = svc
            .clone()
            .oneshot(Request::get("/502").body(String::new()).unwrap())
            .await;
        let s = monitor.snapshot();
        assert_eq!((s.requests, s.errors), (7, 4));
        assert_eq!(
            s.top_routes,
            [
                ("GET /{status}".to_owned(), 3),
                ("other routes".to_owned(), 1)
            ]
        );
    }

    #[tokio::test]
    async fn a_burst_of_errors_fires_one_incident() {
        let manual = ManualClock::new();
        let sink = MemorySink::new();
        let alerter = Alerter::builder()
            .sink(sink.clone())
            .clock(manual.clock())
            .build()
            .unwrap();
        let monitor = watchpost::monitor::HttpMonitor::builder(&alerter)
            .clock(manual.clock())
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(MonitorLayer::new(monitor))
            .service(service_fn(|_req: Request<String>| async {
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Ok::<_, Infallible>(res)
            }));
        for _ in 0..90 {
            svc.clone()
                .oneshot(Request::new(String::new()))
                .await
                .unwrap();
        }
        manual.advance(Duration::from_secs(30));
        assert!(alerter.flush(Duration::from_secs(5)));
        let keys: Vec<String> = sink
            .notifications()
            .iter()
            .map(|n| n.key().to_owned())
            .collect();
        assert_eq!(keys, ["http:5xx"]);
    }
}
