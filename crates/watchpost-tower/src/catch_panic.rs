//! [`CatchPanicLayer`]: a handler that panics answers 500, an alert goes
//! out, and the server keeps serving.
//!
//! The panic is caught both when the inner service's `call` panics and when
//! its response future does. The client gets `500 Internal Server Error`,
//! `content-type: text/plain; charset=utf-8` and the body
//! [`PANIC_BODY`], nothing of the panic
//! itself: the same answer as in the axum and actix-web adapters.
//!
//! With [`watchpost::panic::install`] in place, the hook alerts about the
//! panic (with its location, a backtrace and the request) and does not hold
//! the worker thread, since the process survives. Without the hook, give
//! the layer an [`Alerter`] and it alerts itself, with the message and the
//! request; it never alerts a panic the hook already did.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use watchpost::alert::Alerter;
//! use watchpost_tower::CatchPanicLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let alerter = Alerter::from_env()?;
//! watchpost::panic::install(&alerter); // location and backtrace in alerts
//!
//! let svc = ServiceBuilder::new()
//!     .layer(CatchPanicLayer::new().alerter(&alerter))
//!     .service(service_fn(|_req: Request<String>| async {
//!         let orders: Vec<u32> = Vec::new();
//!         let first = orders[0]; // panics
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(first.to_string()))))
//!     }));
//!
//! let res = svc.oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use watchpost::alert::Alerter;
use watchpost::panic::{
    CatchScope, CatchUnwind, CaughtPanic, Panicked, PANIC_BODY, PANIC_CONTENT_TYPE,
};

/// Catches panics in the inner service: 500 with a plain-text body, and an
/// alert. See the [module docs](crate::catch_panic) for an example.
#[derive(Clone, Debug, Default)]
pub struct CatchPanicLayer {
    alerter: Option<Alerter>,
}

impl CatchPanicLayer {
    /// A layer that answers 500 for a panic and leaves alerting to
    /// watchpost's panic hook.
    pub fn new() -> Self {
        Self::default()
    }

    /// Alerts a caught panic to `alerter` when watchpost's panic hook did
    /// not already (it isn't installed): each panic is alerted once.
    #[must_use]
    pub fn alerter(mut self, alerter: &Alerter) -> Self {
        self.alerter = Some(alerter.clone());
        self
    }
}

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic {
            inner,
            alerter: self.alerter.clone(),
        }
    }
}

/// The service made by [`CatchPanicLayer`].
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
    alerter: Option<Alerter>,
}

impl<S> CatchPanic<S> {
    /// Wraps `inner`, leaving alerting to watchpost's panic hook.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            alerter: None,
        }
    }

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

/// The 500 body is built with `ResBody::from(Bytes)` (axum's `Body`,
/// `Full<Bytes>` and most body types have it), so responses keep the inner
/// service's body type.
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CatchPanic<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let scope =
            CatchScope::for_http_request(req.method(), req.uri()).alerter(self.alerter.as_ref());
        let inner = &mut self.inner;
        match scope.run(|| inner.call(req)) {
            Ok(future) => ResponseFuture {
                kind: Kind::Running {
                    future: scope.wrap(future),
                },
            },
            Err(panicked) => {
                report(&panicked, self.alerter.as_ref());
                ResponseFuture {
                    kind: Kind::Panicked { answered: false },
                }
            }
        }
    }
}

pub(crate) fn report(panicked: &Panicked, alerter: Option<&Alerter>) {
    if let Some(alerter) = alerter {
        panicked.report(alerter);
    }
}

/// The 500 every adapter answers for a panic, marked [`CaughtPanic`] for
/// the monitor further out.
pub(crate) fn panic_response<B: From<Bytes>>() -> Response<B> {
    let mut response = Response::new(B::from(Bytes::from_static(PANIC_BODY.as_bytes())));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PANIC_CONTENT_TYPE));
    response.extensions_mut().insert(CaughtPanic);
    response
}

pin_project! {
    /// Response future of [`CatchPanic`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // The inner future, each poll in the request's catch scope.
        Running { #[pin] future: CatchUnwind<F> },
        // `call` panicked: the 500, ready.
        Panicked { answered: bool },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Running { mut future } => match future.as_mut().poll(cx) {
                Poll::Ready(Ok(result)) => Poll::Ready(result),
                Poll::Ready(Err(panicked)) => {
                    future.scope().report(&panicked);
                    Poll::Ready(Ok(panic_response()))
                }
                Poll::Pending => Poll::Pending,
            },
            KindProj::Panicked { answered } => {
                assert!(
                    !*answered,
                    "`CatchPanic`'s `ResponseFuture` polled after completion"
                );
                *answered = true;
                Poll::Ready(Ok(panic_response()))
            }
        }
    }
}
