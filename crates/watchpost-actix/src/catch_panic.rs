//! [`CatchPanic`]: a handler that panics answers 500, an alert goes out,
//! and the worker keeps serving.

use std::fmt;
use std::future::{ready, Ready};
use std::rc::Rc;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::{Error, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use watchpost::alert::Alerter;
use watchpost::panic::{CatchScope, Panicked, PANIC_BODY, PANIC_CONTENT_TYPE};

/// Catches panics in the wrapped services, with `App::wrap`: the client
/// gets `500 Internal Server Error` with `content-type: text/plain;
/// charset=utf-8` and the body
/// [`PANIC_BODY`] (the same answer as the
/// axum and tower adapters), an alert goes out, and the worker goes on
/// serving. actix-web itself does not catch handler panics: without this,
/// the connection just drops.
///
/// The 500 travels as an `actix_web::Error` (the service could not build a
/// response), so `Logger` logs it and `ErrorHandlers` can restyle it; outer
/// middleware sees an `Err`. Wrap it after (outside) the middleware whose
/// panics it should catch, but inside [`Monitor`](crate::Monitor),
/// which counts the panic as a request (a panic unwinding through the
/// monitor is not counted): `.wrap(CatchPanic::new()).wrap(Monitor::new(monitor))`.
///
/// With [`watchpost::panic::install`] in place, the hook alerts about the
/// panic (with its location, a backtrace and the request) and does not hold
/// the worker thread. Without the hook, give the middleware an [`Alerter`]
/// and it alerts itself; it never alerts a panic the hook already did.
///
/// # Examples
///
/// ```
/// use actix_web::{test, web, App};
/// use watchpost::alert::Alerter;
/// use watchpost_actix::CatchPanic;
///
/// # #[actix_web::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::from_env()?;
/// watchpost::panic::install(&alerter); // location and backtrace in alerts
///
/// let app = test::init_service(
///     App::new()
///         .route("/orders", web::get().to(|| async {
///             let orders: Vec<u32> = Vec::new();
///             orders[0].to_string() // panics
///         }))
///         .wrap(CatchPanic::new().alerter(&alerter)),
/// )
/// .await;
///
/// let req = test::TestRequest::get().uri("/orders").to_request();
/// let err = test::try_call_service(&app, req).await.unwrap_err();
/// assert_eq!(err.as_response_error().status_code(), 500);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct CatchPanic {
    alerter: Option<Alerter>,
}

impl CatchPanic {
    /// Middleware that answers 500 for a panic and leaves alerting to
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

impl<S, B> Transform<S, ServiceRequest> for CatchPanic
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = CatchPanicMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CatchPanicMiddleware {
            service: Rc::new(service),
            alerter: self.alerter.clone(),
        }))
    }
}

/// The service made by [`CatchPanic`].
#[derive(Debug)]
pub struct CatchPanicMiddleware<S> {
    service: Rc<S>,
    alerter: Option<Alerter>,
}

impl<S, B> Service<ServiceRequest> for CatchPanicMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // No clone of the request is kept: actix's router needs it unshared.
        let scope = CatchScope::for_request(req.method().as_str(), req.path())
            .alerter(self.alerter.as_ref());
        let service = &self.service;
        match scope.run(|| service.call(req)) {
            Ok(future) => {
                let alerter = self.alerter.clone();
                Box::pin(async move {
                    match scope.wrap(future).await {
                        Ok(result) => result,
                        Err(panicked) => Err(answer(&panicked, alerter.as_ref())),
                    }
                })
            }
            Err(panicked) => Box::pin(ready(Err(answer(&panicked, self.alerter.as_ref())))),
        }
    }
}

fn answer(panicked: &Panicked, alerter: Option<&Alerter>) -> Error {
    if let Some(alerter) = alerter {
        panicked.report(alerter);
    }
    HandlerPanicked {
        message: panicked.message().to_owned(),
    }
    .into()
}

/// Whether `error` is the 500 of a panic [`CatchPanic`] caught.
pub(crate) fn is_caught_panic(error: &Error) -> bool {
    error.as_error::<HandlerPanicked>().is_some()
}

/// The error a caught panic becomes: answered with the same 500 as in
/// every adapter; its `Display` (for logs, never the client) is the panic.
struct HandlerPanicked {
    message: String,
}

impl fmt::Debug for HandlerPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request handler panicked: {}", self.message)
    }
}

impl ResponseError for HandlerPanicked {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::InternalServerError()
            .insert_header((CONTENT_TYPE, PANIC_CONTENT_TYPE))
            .body(PANIC_BODY)
    }
}
