//! A [`Watchpost`] for actix-web: the probes, the [`Layers`] middleware,
//! per-route limits, and [`serve`].

use std::fmt;
use std::future::{ready, Ready};

use actix_http::body::MessageBody;
use actix_http::{Request, Response};
use actix_service::IntoServiceFactory;
use actix_web::body::EitherBody;
use actix_web::dev::{
    AppConfig, Service, ServiceFactory, ServiceRequest, ServiceResponse, Transform,
};
use actix_web::web::ServiceConfig;
use actix_web::{Error, HttpServer};
use futures_util::future::{Either, LocalBoxFuture};
use watchpost::health::HealthChecks;
use watchpost::ratelimit::Quota;
use watchpost::Watchpost;

use crate::catch_panic::{CatchPanic, CatchPanicMiddleware};
use crate::monitor::{Monitor, MonitorMiddleware};
use crate::rate_limit::{RateLimit, RateLimitFuture, RateLimitMiddleware};

/// What a [`Watchpost`] gives an actix-web application. See the
/// [crate docs](crate) for the whole setup.
pub trait WatchpostExt: sealed::Sealed {
    /// The health probes, for [`App::configure`](actix_web::App::configure)
    /// in an app that doesn't wrap [`layers`](Self::layers) (which answer
    /// them): registered in the router, each costs every other request a
    /// prefix compare there.
    fn probes(&self) -> impl Fn(&mut ServiceConfig) + Clone + 'static;

    /// The middleware for the whole app, with
    /// [`App::wrap`](actix_web::App::wrap): the health probes (answered
    /// before the router sees them, so they cost the other routes a path
    /// compare), the application-wide rate limit (if the handle has one),
    /// the HTTP monitor and catching panics, in that order from the
    /// outside. Clones share the counts: call it inside
    /// `HttpServer::new`'s factory on a clone of the handle built outside
    /// it.
    fn layers(&self) -> Layers;

    /// A per-client limit of `quota` for one route and method, for
    /// `Route::wrap` (`web::post().to(chat).wrap(limit)`), so other
    /// methods' 405s and 404s are never counted. On the handle's clock,
    /// trusted proxies and shared state; see
    /// [`Watchpost::rate_limiter`] to refine it. Build it once, outside
    /// the factory, and clone it into each worker's `App`.
    fn rate_limit(&self, quota: Quota) -> RateLimit;
}

impl WatchpostExt for Watchpost {
    fn probes(&self) -> impl Fn(&mut ServiceConfig) + Clone + 'static {
        crate::configure(self.health().clone())
    }

    fn layers(&self) -> Layers {
        Layers {
            health: self.health().clone(),
            rate_limit: match self.app_rate_limiter() {
                Some(limiter) => RateLimit::new(limiter.clone()),
                None => RateLimit::disabled(),
            },
            monitor: Monitor::new(self.monitor().clone()),
            catch_panic: CatchPanic::new().alerter(self.alerter()),
        }
    }

    fn rate_limit(&self, quota: Quota) -> RateLimit {
        RateLimit::new(self.rate_limiter(quota))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for watchpost::Watchpost {}
}

/// The middleware of a [`Watchpost`] in one `wrap`, from
/// [`WatchpostExt::layers`]: the health probes answered first (their
/// paths never reach the router, the rate limit or the monitor), then
/// [`RateLimit`] outside [`Monitor`] outside [`CatchPanic`].
#[derive(Clone)]
pub struct Layers {
    health: HealthChecks,
    rate_limit: RateLimit,
    monitor: Monitor,
    catch_panic: CatchPanic,
}

impl fmt::Debug for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layers")
            .field("rate_limit", &self.rate_limit)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

/// The service made by [`Layers`].
pub struct LayersMiddleware<S> {
    inner: RateLimitMiddleware<MonitorMiddleware<CatchPanicMiddleware<S>>>,
    health: HealthChecks,
    probes: Box<[Box<str>]>,
}

impl<S> fmt::Debug for LayersMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayersMiddleware")
            .field("probes", &self.probes)
            .finish_non_exhaustive()
    }
}

impl<S, B> Transform<S, ServiceRequest> for Layers
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = LayersMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        // Each part builds at once (a `Ready`): compose them in place.
        let layered = self
            .catch_panic
            .new_transform(service)
            .into_inner()
            .and_then(|s| self.monitor.new_transform(s).into_inner())
            .and_then(|s| self.rate_limit.new_transform(s).into_inner());
        ready(layered.map(|inner| {
            LayersMiddleware {
                inner,
                health: self.health.clone(),
                probes: self
                    .health
                    .probe_paths()
                    .into_iter()
                    .map(Box::from)
                    .collect(),
            }
        }))
    }
}

impl<S, B> Service<ServiceRequest> for LayersMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Either<
        RateLimitFuture<MonitorMiddleware<CatchPanicMiddleware<S>>, B>,
        LocalBoxFuture<'static, Result<Self::Response, Error>>,
    >;

    fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // What the probes' routes take elsewhere: `/<probe>` and
        // `/<probe>/<name>` (one segment); anything else is the router's.
        let path = req.path();
        let probe = self.probes.iter().any(|base| {
            path.strip_prefix(&**base).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('/')
                        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
            })
        });
        if !probe {
            return Either::Left(self.inner.call(req));
        }
        let health = self.health.clone();
        Either::Right(Box::pin(async move {
            let (req, _payload) = req.into_parts();
            let response = crate::respond(&health, &req).await;
            Ok(ServiceResponse::new(req, response).map_into_right_body())
        }))
    }
}

/// Runs `server` with the graceful shutdown a [`Watchpost`] needs: actix's
/// own signal handling is switched off, and on Ctrl-C or SIGTERM readiness
/// answers 503 at once, the server keeps serving for the drain delay
/// ([`WatchpostBuilder::drain`](watchpost::WatchpostBuilder::drain)), then
/// stops gracefully (in-flight requests finish). Dropping the handle after
/// it flushes pending alerts.
///
/// actix's graceful stop waits for every open connection, idle keep-alive
/// ones included, until its
/// [`shutdown_timeout`](actix_web::HttpServer::shutdown_timeout) (30 s by
/// default; hyper, under axum, closes idle connections at once). A load
/// balancer that stopped routing during the drain leaves its keep-alive
/// connections idle, so the process exits only when they time out
/// ([`keep_alive`](actix_web::HttpServer::keep_alive), 5 s by default):
/// set `shutdown_timeout` to the longest request you want to let finish
/// after the drain (the quickstart uses 2 s) to exit sooner.
///
/// # Errors
///
/// What the server returns: an I/O error of its listeners.
pub async fn serve<F, I, S, B>(
    server: HttpServer<F, I, S, B>,
    wp: &Watchpost,
) -> std::io::Result<()>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let server = server.disable_signals().run();
    let handle = server.handle();
    let shutdown = wp.shutdown_signal();
    actix_web::rt::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await
}
