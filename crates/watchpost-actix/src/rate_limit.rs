//! [`RateLimit`]: per-client-IP rate limiting middleware for actix-web.

use std::cell::RefCell;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage, HttpResponse};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use pin_project_lite::pin_project;
use watchpost::client_ip::{Headers, ResolvedClientIp};
use watchpost::ratelimit::{
    Outcome, RateLimitHeader, RateLimitKey, RateLimitRequest, RateLimiter, Verdict,
};

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
            policies: Rc::default(),
        }))
    }
}

/// The service made by [`RateLimit`].
#[derive(Debug)]
pub struct RateLimitMiddleware<S> {
    service: Rc<S>,
    limiter: Option<Arc<RateLimiter>>,
    policies: Rc<PolicyValues>,
}

/// actix's headers as the resolver reads them.
pub(crate) struct ActixHeaders<'a>(pub(crate) &'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn for_each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
        let values = match name {
            "forwarded" => self.0.get_all(header::FORWARDED),
            "x-forwarded-for" => self.0.get_all(X_FORWARDED_FOR),
            "x-real-ip" => self.0.get_all(X_REAL_IP),
            other => self.0.get_all(other),
        };
        for value in values {
            f(value.as_bytes());
        }
    }

    fn forwarding_present(&self) -> [bool; 3] {
        [
            self.0.contains_key(header::FORWARDED),
            self.0.contains_key("x-forwarded-for"),
            self.0.contains_key("x-real-ip"),
        ]
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
    type Future = RateLimitFuture<S, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let Some(limiter) = &self.limiter else {
            return RateLimitFuture {
                kind: Kind::Inner {
                    future: self.service.call(req),
                    headers: None,
                },
            };
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
        let kind = match verdict {
            Verdict::Ready(outcome) => match decided(&self.service, req, outcome, &self.policies) {
                Decided::Rejected(response) => Kind::Rejected {
                    response: Some(response),
                },
                Decided::Inner(future, headers) => Kind::Inner {
                    future,
                    headers: Some(headers),
                },
            },
            // Counts in a shared store (Redis): wait for its decision.
            Verdict::Pending(check) => {
                let service = self.service.clone();
                let policies = self.policies.clone();
                Kind::Waiting {
                    future: Box::pin(async move {
                        let outcome = check.await;
                        match decided(&service, req, outcome, &policies) {
                            Decided::Rejected(response) => Ok(response),
                            Decided::Inner(future, headers) => {
                                respond(future.await, Some(&headers))
                            }
                        }
                    }),
                }
            }
        };
        RateLimitFuture { kind }
    }
}

/// What a decided request gets.
enum Decided<S: Service<ServiceRequest>, B> {
    /// The 429.
    Rejected(ServiceResponse<EitherBody<B>>),
    /// The inner call, and what its answer's headers are made of.
    Inner(S::Future, (Outcome, Rc<PolicyValues>)),
}

/// The 429, or the inner service's call, once `outcome` is known.
fn decided<S, B>(
    service: &Rc<S>,
    req: ServiceRequest,
    outcome: Outcome,
    policies: &Rc<PolicyValues>,
) -> Decided<S, B>
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
        insert_headers(response.headers_mut(), &outcome, policies);
        return Decided::Rejected(req.into_response(response).map_into_right_body());
    }
    Decided::Inner(service.call(req), (outcome, policies.clone()))
}

/// The inner service's answer with the quota headers.
fn respond<B>(
    result: Result<ServiceResponse<B>, Error>,
    headers: Option<&(Outcome, Rc<PolicyValues>)>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let Some((outcome, policies)) = headers else {
        return result.map(ServiceResponse::map_into_left_body);
    };
    match result {
        Ok(mut response) => {
            insert_headers(response.headers_mut(), outcome, policies);
            Ok(response.map_into_left_body())
        }
        Err(error) => {
            // An error (a caught panic, a handler's `Err`) becomes a
            // response further out; give it the headers now, as the tower
            // layer does for every response.
            let mut response = error.error_response();
            insert_headers(response.headers_mut(), outcome, policies);
            Err(InternalError::from_response(error, response).into())
        }
    }
}

pin_project! {
    /// Response future of [`RateLimitMiddleware`]: nothing boxed on the
    /// in-memory path.
    pub struct RateLimitFuture<S: Service<ServiceRequest>, B> {
        #[pin]
        kind: Kind<S, B>,
    }
}

type Answer<B> = Result<ServiceResponse<EitherBody<B>>, Error>;

pin_project! {
    #[project = KindProj]
    enum Kind<S: Service<ServiceRequest>, B> {
        // Over quota: the 429, ready.
        Rejected { response: Option<ServiceResponse<EitherBody<B>>> },
        // Allowed: the inner call, then the headers.
        Inner { #[pin] future: S::Future, headers: Option<(Outcome, Rc<PolicyValues>)> },
        // A shared store is deciding (a network round trip: boxed).
        Waiting { future: LocalBoxFuture<'static, Answer<B>> },
    }
}

impl<S: Service<ServiceRequest>, B> std::fmt::Debug for RateLimitFuture<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitFuture").finish_non_exhaustive()
    }
}

impl<S, B> Future for RateLimitFuture<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Output = Answer<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("`RateLimitFuture` polled after completion"),
            },
            KindProj::Inner { future, headers } => {
                let result = std::task::ready!(future.poll(cx));
                Poll::Ready(respond(result, headers.as_ref()))
            }
            KindProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

fn insert_headers(headers: &mut HeaderMap, outcome: &Outcome, policies: &PolicyValues) {
    outcome.for_each_header(|name, value| {
        let value = match name {
            RateLimitHeader::Policy => policies.get(outcome.policy_name(), value),
            // The core writes ASCII; an invalid value would be skipped.
            _ => HeaderValue::from_maybe_shared(value).ok(),
        };
        if let Some(value) = value {
            headers.insert(header_name(name), value);
        }
    });
}

/// The header names as constants (no parsing per request).
fn header_name(header: RateLimitHeader) -> HeaderName {
    const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
    const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    match header {
        RateLimitHeader::Policy => POLICY,
        RateLimitHeader::RateLimit => RATELIMIT,
        RateLimitHeader::Limit => LIMIT,
        RateLimitHeader::Remaining => REMAINING,
        RateLimitHeader::Reset => RESET,
        RateLimitHeader::RetryAfter => header::RETRY_AFTER,
        other => HeaderName::from_static(other.as_str()),
    }
}

/// Each rule's `RateLimit-Policy` value as actix's header value, converted
/// (and checked) once per worker instead of once per request.
#[derive(Debug, Default)]
struct PolicyValues(RefCell<Vec<(Box<str>, HeaderValue)>>);

impl PolicyValues {
    fn get(&self, name: Option<&str>, value: Bytes) -> Option<HeaderValue> {
        let name = name.unwrap_or_default();
        let Ok(mut cache) = self.0.try_borrow_mut() else {
            return HeaderValue::from_maybe_shared(value).ok();
        };
        if let Some((_, cached)) = cache.iter().find(|(n, _)| **n == *name) {
            return Some(cached.clone());
        }
        let converted = HeaderValue::from_maybe_shared(value).ok()?;
        cache.push((name.into(), converted.clone()));
        Some(converted)
    }
}
