//! [`Monitor`]: feeds a [`watchpost::monitor::HttpMonitor`] with every
//! request's status and latency, with `App::wrap`.

use std::cell::OnceCell;
use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::dev::{
    forward_ready, ResourceMap, Service, ServiceRequest, ServiceResponse, Transform,
};
use actix_web::http::{Method, Uri};
use actix_web::Error;
use pin_project_lite::pin_project;
use watchpost::monitor::RequestStart;

/// Records every request's status and latency into a
/// [`watchpost::monitor::HttpMonitor`], with `App::wrap`: one incident when
/// the 5xx rate or the p95 latency goes wrong, slow requests logged. The
/// same counting as `watchpost_tower::HttpMonitorLayer` in axum and tower.
///
/// Per request it reads the clock twice, adds one or two relaxed atomics
/// and keeps the request's URI (a reference count): nothing allocated,
/// nothing locked, no boxed future. The route pattern (`GET /users/{id}`,
/// as actix's [`match_pattern`](actix_web::HttpRequest::match_pattern)
/// finds it) is looked up only for a 5xx or a slow request. Latency is
/// measured until the response head is ready, not until its body is sent;
/// a request whose future is dropped before it completes (the client went
/// away) is not counted.
///
/// An error that reaches the middleware as `Err` (from middleware inside
/// it) counts with its status code, under its route like any other
/// answer: actix drops the request with such an error, so the pattern is
/// looked up in the app's resource map (copied once per worker, on its
/// first request) from the URI kept. The 500 of
/// [`CatchPanic`](crate::CatchPanic) for a panic counts as a request but
/// not in the 5xx rate: the panic is alerted on its own, so one bug gives
/// one message.
///
/// # Where to wrap it
///
/// - **Outside [`CatchPanic`](crate::CatchPanic)** (`.wrap(CatchPanic::new())`
///   first, then `.wrap(Monitor::new(..))`: in actix the last `wrap` is
///   the outermost), so that a panic is counted as the 500 it becomes.
/// - **Around the whole app**, probes included: requests to the probes'
///   paths are not counted (their 503s are signals to the load balancer,
///   not server errors; see
///   [`HttpMonitor::watches`](watchpost::monitor::HttpMonitor::watches)).
///
/// # Examples
///
/// ```
/// use actix_web::{http::StatusCode, test, web, App, HttpResponse};
/// use watchpost::alert::{Alerter, LogSink};
/// use watchpost::health::HealthChecks;
/// use watchpost_actix::{CatchPanic, Monitor};
///
/// # #[actix_web::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::builder().sink(LogSink::new()).build()?;
/// let monitor = watchpost::monitor::HttpMonitor::new(&alerter)?;
/// let health = HealthChecks::builder().build()?;
///
/// let app = test::init_service(
///     App::new()
///         .configure(watchpost_actix::configure(health.clone()))
///         .route("/users/{id}", web::get().to(|| async {
///             HttpResponse::InternalServerError().finish()
///         }))
///         .wrap(CatchPanic::new())
///         // Clone the monitor into each worker's App.
///         .wrap(Monitor::new(monitor.clone())),
/// )
/// .await;
///
/// let req = test::TestRequest::get().uri("/users/42").to_request();
/// assert_eq!(test::call_service(&app, req).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
/// let req = test::TestRequest::get().uri("/livez").to_request();
/// assert_eq!(test::call_service(&app, req).await.status(), StatusCode::OK);
///
/// let window = monitor.snapshot();
/// assert_eq!((window.requests, window.errors), (1, 1));
/// assert_eq!(window.top_routes, [("GET /users/{id}".to_owned(), 1)]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Monitor {
    monitor: watchpost::monitor::HttpMonitor,
}

impl Monitor {
    /// Middleware feeding `monitor`. Clones share the monitor's window, so
    /// build it once, outside `HttpServer::new`'s factory.
    pub fn new(monitor: watchpost::monitor::HttpMonitor) -> Self {
        Self { monitor }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Monitor
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = MonitorMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(MonitorMiddleware {
            service,
            // A worker's requests share it without atomic reference counts.
            monitor: Rc::new(self.monitor.clone()),
            routes: OnceCell::new(),
        }))
    }
}

/// The service made by [`Monitor`].
pub struct MonitorMiddleware<S> {
    service: S,
    monitor: Rc<watchpost::monitor::HttpMonitor>,
    /// The app's resource map, to name the route of a request that comes
    /// back as `Err` (without its request). One app per worker, built
    /// once: the map of its first request is the map of all of them.
    routes: OnceCell<Rc<ResourceMap>>,
}

impl<S> fmt::Debug for MonitorMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorMiddleware")
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for MonitorMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = MonitorFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if !self.monitor.watches(req.path()) {
            // A health probe: its 503 is a signal, not an error.
            return MonitorFuture {
                inner: self.service.call(req),
                pending: None,
            };
        }
        // No clone of the request is kept: actix's router needs it unshared.
        // A standard method clones as an enum tag.
        let start = self.monitor.start();
        let method = req.method().clone();
        let routes = self
            .routes
            .get_or_init(|| Rc::new(req.resource_map().clone()));
        let routes = Rc::clone(routes);
        // Shared with the request's own copy (actix's `match_info` holds
        // one): a reference count, not a copy of the path.
        let uri = req.uri().clone();
        MonitorFuture {
            inner: self.service.call(req),
            pending: Some(Pending {
                monitor: Rc::clone(&self.monitor),
                start,
                method,
                routes,
                uri,
            }),
        }
    }
}

struct Pending {
    monitor: Rc<watchpost::monitor::HttpMonitor>,
    start: RequestStart,
    method: Method,
    routes: Rc<ResourceMap>,
    uri: Uri,
}

pin_project! {
    /// The response future of [`MonitorMiddleware`].
    pub struct MonitorFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F> fmt::Debug for MonitorFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorFuture").finish_non_exhaustive()
    }
}

impl<F, B> Future for MonitorFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some(Pending {
            monitor,
            start,
            method,
            routes,
            uri,
        }) = this.pending.take()
        {
            let method = method.as_str();
            match &output {
                // The request as routed (a `NormalizePath` inside may have
                // rewritten its path).
                Ok(res) => monitor.record(start, res.status().as_u16(), method, || {
                    res.request().match_pattern()
                }),
                Err(error) => {
                    // What `HttpRequest::match_pattern` does, without the
                    // request (gone with the `Err`).
                    let route = || routes.match_pattern(uri.path());
                    if crate::catch_panic::is_caught_panic(error) {
                        monitor.record_panic(start, method, route);
                    } else {
                        let status = error.as_response_error().status_code().as_u16();
                        monitor.record(start, status, method, route);
                    }
                }
            }
        }
        Poll::Ready(output)
    }
}
