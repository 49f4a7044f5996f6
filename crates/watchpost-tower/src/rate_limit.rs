//! [`RateLimitLayer`]: per-client-IP rate limiting for any tower stack.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{Extensions, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use watchpost::ratelimit::{
    Outcome, RateLimitKey, RateLimitRequest, RateLimiter, Verdict, VerdictFuture,
};

pub use watchpost::client_ip::ResolvedClientIp;

/// Finds the TCP peer's address in a request's extensions.
///
/// The default, [`SocketAddrPeer`], reads a `SocketAddr` extension (insert
/// one per connection when serving with hyper directly);
/// `watchpost-axum` provides one that reads axum's `ConnectInfo`.
pub trait PeerAddr: Clone + Send + Sync + 'static {
    /// The peer's address, if known.
    fn peer_addr(&self, extensions: &Extensions) -> Option<IpAddr>;
}

/// Reads a [`SocketAddr`] (or [`IpAddr`]) request extension.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketAddrPeer;

impl PeerAddr for SocketAddrPeer {
    fn peer_addr(&self, extensions: &Extensions) -> Option<IpAddr> {
        extensions
            .get::<SocketAddr>()
            .map(SocketAddr::ip)
            .or_else(|| extensions.get::<IpAddr>().copied())
    }
}

/// Applies a [`RateLimiter`] to every request: 429 with `Retry-After` and the
/// `RateLimit` headers when over quota, the quota headers on allowed
/// responses. See the [module docs](crate) for an example.
///
/// To limit one route and method only (never counting other methods, 404s
/// or 405s), put the layer on that route, not on the whole service: in
/// axum, `post(chat).route_layer(..)`; with a plain tower stack, on the
/// service that answers that route after your own routing.
#[derive(Clone)]
pub struct RateLimitLayer<P = SocketAddrPeer> {
    limiter: Option<Arc<RateLimiter>>,
    peer: P,
}

impl<P> fmt::Debug for RateLimitLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A layer applying `limiter`, reading the peer address from a
    /// `SocketAddr` request extension ([`SocketAddrPeer`]).
    pub fn new(limiter: RateLimiter) -> Self {
        Self::with_peer_addr(limiter, SocketAddrPeer)
    }
}

impl<P: PeerAddr> RateLimitLayer<P> {
    /// A layer applying `limiter`, finding the peer address with `peer`.
    pub fn with_peer_addr(limiter: RateLimiter, peer: P) -> Self {
        Self {
            limiter: Some(Arc::new(limiter)),
            peer,
        }
    }

    /// A layer that limits nothing (when a stack's rate limit is
    /// optional).
    pub fn disabled(peer: P) -> Self {
        Self {
            limiter: None,
            peer,
        }
    }

    /// The limiter, unless disabled.
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.limiter.as_deref()
    }
}

impl<S, P: Clone> Layer<S> for RateLimitLayer<P> {
    type Service = RateLimit<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            peer: self.peer.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S, P = SocketAddrPeer> {
    inner: S,
    limiter: Option<Arc<RateLimiter>>,
    peer: P,
}

impl<S: fmt::Debug, P> fmt::Debug for RateLimit<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, P> RateLimit<S, P> {
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

/// The 429 body is built with `ResBody::from(Bytes)` (axum's `Body`,
/// `Full<Bytes>` and most body types have it), so responses keep the inner
/// service's body type: nothing is wrapped or boxed on the way out.
///
/// With a limiter whose counts live in a
/// [`store`](RateLimiter::store) (Redis), the request waits for the store's
/// decision before the inner service is called; the inner service is
/// cloned for that (hence `S: Clone`, as in tower's other asynchronous
/// middleware), and the one that was made ready is the one called.
impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
    P: PeerAddr,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>, S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let Some(limiter) = &self.limiter else {
            return ResponseFuture {
                kind: FutureKind::Inner {
                    future: self.inner.call(req),
                    outcome: None,
                },
            };
        };
        let kind = match check(limiter, &self.peer, &mut req) {
            Verdict::Ready(outcome) => decided(&mut self.inner, req, outcome),
            Verdict::Pending(check) => {
                // Take the service `poll_ready` prepared; leave a clone.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                FutureKind::Waiting {
                    waiting: Box::new((check, Some((service, req)))),
                }
            }
        };
        ResponseFuture { kind }
    }
}

/// Checks `req` against `limiter`, leaving the resolved client address in
/// its extensions when a reader couldn't work it out again.
pub(crate) fn check<P: PeerAddr, B>(
    limiter: &RateLimiter,
    peer: &P,
    req: &mut Request<B>,
) -> Verdict {
    let peer = peer.peer_addr(req.extensions());
    let extension = if limiter.uses_extension() {
        req.extensions().get::<RateLimitKey>()
    } else {
        None
    };
    let verdict = limiter.check_request(
        &RateLimitRequest::new(req.method().as_str(), req.uri().path(), peer, req.headers())
            .extension(extension),
    );
    // A reader resolves again with the process default; only another
    // resolver's answer has to travel with the request.
    if let Some(ip) = verdict.client_ip() {
        if !limiter.resolver().is_process_default() {
            req.extensions_mut().insert(ResolvedClientIp(ip));
        }
    }
    verdict
}

/// The 429 for a rejected request.
pub(crate) fn rejected<B: From<Bytes>, R>(outcome: &Outcome, req: &Request<R>) -> Response<B> {
    let accept = req.headers().get(ACCEPT).map(HeaderValue::as_bytes);
    rejection(outcome, accept)
}

/// The 429, or the inner service's call, once `outcome` is known.
fn decided<S, ReqBody, ResBody>(
    service: &mut S,
    req: Request<ReqBody>,
    outcome: Outcome,
) -> FutureKind<S, Request<ReqBody>, S::Future, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    if outcome.is_rejected() {
        return FutureKind::Rejected {
            response: Some(rejected(&outcome, &req)),
        };
    }
    FutureKind::Inner {
        future: service.call(req),
        outcome: Some(outcome),
    }
}

fn rejection<B: From<Bytes>>(outcome: &Outcome, accept: Option<&[u8]>) -> Response<B> {
    let (content_type, body) = outcome.rejection_body(accept);
    let mut response = Response::new(B::from(body));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    outcome.write_headers(headers);
    response
}

pin_project! {
    /// Response future of [`RateLimit`]: the inner service `S` and request
    /// `R` wait here while a shared store decides; `F` is the inner future.
    pub struct ResponseFuture<S, R, F, B> {
        #[pin]
        kind: FutureKind<S, R, F, B>,
    }
}

pin_project! {
    #[project = FutureProj]
    enum FutureKind<S, R, F, B> {
        // Over quota: the 429, ready.
        Rejected { response: Option<Response<B>> },
        // The store is deciding; then `Rejected` or `Inner`. Boxed: a
        // round trip to the store dwarfs the allocation, and the future of
        // every in-memory check stays the size of the inner one plus the
        // outcome.
        Waiting { waiting: Box<(VerdictFuture, Option<(S, R)>)> },
        // Allowed: the inner service's future, then the quota headers
        // (none when the layer is disabled).
        Inner { #[pin] future: F, outcome: Option<Outcome> },
    }
}

impl<S, R, F, B> fmt::Debug for ResponseFuture<S, R, F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, B, E> Future for ResponseFuture<S, Request<ReqBody>, S::Future, B>
where
    S: Service<Request<ReqBody>, Response = Response<B>, Error = E>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let FutureProj::Waiting { waiting } = self.as_mut().project().kind.project() {
            let (check, waiting) = &mut **waiting;
            let outcome = match Pin::new(check).poll(cx) {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => return Poll::Pending,
            };
            let Some((mut service, req)) = waiting.take() else {
                panic!("`RateLimit`'s `ResponseFuture` polled after completion");
            };
            let next = decided(&mut service, req, outcome);
            self.as_mut().project().kind.set(next);
        }
        match self.project().kind.project() {
            FutureProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("`RateLimit`'s `ResponseFuture` polled after completion"),
            },
            FutureProj::Inner { future, outcome } => {
                let mut response = match future.poll(cx) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => return Poll::Pending,
                };
                if let Some(outcome) = outcome.take() {
                    outcome.write_headers(response.headers_mut());
                }
                Poll::Ready(Ok(response))
            }
            // Left above, once the store has answered.
            FutureProj::Waiting { .. } => {
                panic!("`RateLimit`'s `ResponseFuture` polled after completion")
            }
        }
    }
}
