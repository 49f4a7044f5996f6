//! [`RateLimit`]: per-client-IP rate limiting middleware for actix-web.

use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage, HttpResponse};
use futures_util::future::LocalBoxFuture;
use watchpost::client_ip::{Headers, ResolvedClientIp};
use watchpost::ratelimit::{Outcome, RateLimitKey, RateLimitRequest, RateLimiter, Verdict};

/// Applies a [`RateLimiter`] with `App::wrap`: 429 with `Retry-After` and the
/// IETF `RateLimit` headers when a client is over quota, the quota headers
/// on allowed responses; the same answers as the axum and tower adapters.
///
/// The peer address is actix's `peer_addr`; forwarding headers count only
/// from trusted proxies (see [`watchpost::client_ip`]).
///
/// To limit one route and method only (never counting other methods' 405s
/// or 404s), wrap that route: `web::resource("/api/chat")
/// .route(web::post().to(chat).wrap(limit))` (`Route::wrap`; a
/// `Resource::wrap` would count the 405s of other methods too).
///
/// ```
/// use actix_web::{web, App};
/// use watchpost::ratelimit::RateLimiter;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RateLimiter::per_ip("120/min".parse()?).route("/api/chat", "10/min".parse()?);
/// let rate_limit = watchpost_actix::RateLimit::new(limiter);
/// let app = App::new()
///     .wrap(rate_limit.clone()) // clone it into each worker's App
///     .route("/", web::get().to(|| async { "hello" }));
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimit {
    limiter: Option<Arc<RateLimiter>>,
}

impl RateLimit {
    /// Middleware applying `limiter`. Clones share the limiter's state, so
    /// build it once, outside `HttpServer::new`'s factory.
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            limiter: Some(Arc::new(limiter)),
        }
    }

    /// Middleware that limits nothing (when a stack's rate limit is
    /// optional).
    pub fn disabled() -> Self {
        Self { limiter: None }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RateLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RateLimitMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RateLimitMiddleware {
            service: Rc::new(service),
            limiter: self.limiter.clone(),
        }))
    }
}

/// The service made by [`RateLimit`].
#[derive(Debug)]
pub struct RateLimitMiddleware<S> {
    service: Rc<S>,
    limiter: Option<Arc<RateLimiter>>,
}

struct ActixHeaders<'a>(&'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn for_each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for value in self.0.get_all(name) {
            f(value.as_bytes());
        }
    }
}

impl<S, B> Service<ServiceRequest> for RateLimitMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let Some(limiter) = &self.limiter else {
            let future = self.service.call(req);
            return Box::pin(async move { Ok(future.await?.map_into_left_body()) });
        };
        let extension = if limiter.uses_extension() {
            req.extensions().get::<RateLimitKey>().cloned()
        } else {
            None
        };
        let verdict = limiter.check_request(
            &RateLimitRequest::new(
                req.method().as_str(),
                req.path(),
                req.peer_addr().map(|addr| addr.ip()),
                &ActixHeaders(req.headers()),
            )
            .extension(extension.as_ref()),
        );
        // A reader resolves again with the process default; only another
        // resolver's answer has to travel with the request.
        if let Some(ip) = verdict.client_ip() {
            if !limiter.resolver().is_process_default() {
                req.extensions_mut().insert(ResolvedClientIp(ip));
            }
        }
        match verdict {
            Verdict::Ready(outcome) => decided(&self.service, req, outcome),
            // Counts in a shared store (Redis): wait for its decision.
            Verdict::Pending(check) => {
                let service = self.service.clone();
                Box::pin(async move { decided(&service, req, check.await).await })
            }
        }
    }
}

/// The 429, or the inner service's call with the quota headers, once
/// `outcome` is known.
fn decided<S, B>(
    service: &Rc<S>,
    req: ServiceRequest,
    outcome: Outcome,
) -> LocalBoxFuture<'static, Result<ServiceResponse<EitherBody<B>>, Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    if outcome.is_rejected() {
        let accept = req.headers().get(header::ACCEPT).map(HeaderValue::as_bytes);
        let (content_type, body) = outcome.rejection_body(accept);
        let mut response = HttpResponse::TooManyRequests();
        response.insert_header((header::CONTENT_TYPE, content_type));
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        let mut response = response.body(body);
        insert_headers(response.headers_mut(), &outcome);
        let response = req.into_response(response).map_into_right_body();
        return Box::pin(ready(Ok(response)));
    }
    let future = service.call(req);
    Box::pin(async move {
        let mut response = match future.await {
            Ok(response) => response,
            Err(error) => {
                // An error (a caught panic, a handler's `Err`) becomes a
                // response further out; give it the headers now, as the
                // tower layer does for every response.
                let mut response = error.error_response();
                insert_headers(response.headers_mut(), &outcome);
                return Err(InternalError::from_response(error, response).into());
            }
        };
        insert_headers(response.headers_mut(), &outcome);
        Ok(response.map_into_left_body())
    })
}

fn insert_headers(headers: &mut HeaderMap, outcome: &Outcome) {
    for (name, value) in outcome.headers() {
        // The core writes ASCII; an invalid value would be skipped, not fail.
        if let Ok(value) = HeaderValue::from_maybe_shared(value) {
            headers.insert(HeaderName::from_static(name.as_str()), value);
        }
    }
}
