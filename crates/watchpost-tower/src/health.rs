use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;
use watchpost::health::{HealthChecks, ProbeRequest, ProbeResponse};

/// A tower [`Service`] answering the health probes.
///
/// Requests to other paths get a 404 (with `Cache-Control: no-store`), so
/// mount it on the probe paths (axum's `route_service`, or a path router),
/// or use `watchpost_axum::routes`.
///
/// ```
/// use http::Request;
/// use http_body_util::Empty;
/// use tower::ServiceExt;
/// use watchpost::checks::fn_check;
/// use watchpost::health::HealthChecks;
/// use watchpost_tower::HealthService;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let health = HealthChecks::builder()
///     .readiness("db", fn_check(|| async { false }))
///     .build()?;
/// let service = HealthService::new(health);
/// let get = |path: &str| Request::get(path).body(Empty::<bytes::Bytes>::new());
/// assert_eq!(service.clone().oneshot(get("/livez")?).await?.status(), 200);
/// assert_eq!(service.clone().oneshot(get("/readyz")?).await?.status(), 503);
/// assert_eq!(service.oneshot(get("/elsewhere")?).await?.status(), 404);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HealthService {
    health: HealthChecks,
}

impl HealthService {
    /// A service answering for `health`.
    pub fn new(health: HealthChecks) -> Self {
        Self { health }
    }

    /// The health checks this service answers for.
    pub fn get_ref(&self) -> &HealthChecks {
        &self.health
    }

    /// Takes the health checks back.
    pub fn into_inner(self) -> HealthChecks {
        self.health
    }
}

impl fmt::Debug for HealthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthService")
            .field("health", &self.health)
            .finish()
    }
}

impl<B> Service<Request<B>> for HealthService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let health = self.health.clone();
        // Only the head is needed; the body is dropped unread.
        let (parts, _body) = req.into_parts();
        ResponseFuture {
            inner: Box::pin(async move {
                let probe = ProbeRequest::new(parts.method.as_str(), parts.uri.path())
                    .query(parts.uri.query())
                    .authorization(parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes));
                Ok(into_response(health.respond(probe).await))
            }),
        }
    }
}

type HealthResponse = Result<Response<Full<Bytes>>, Infallible>;

/// Response future of [`HealthService`].
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = HealthResponse> + Send>>,
}

impl Future for ResponseFuture {
    type Output = HealthResponse;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

fn into_response(probe: ProbeResponse) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(probe.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = http::HeaderMap::new();
    for (name, value) in probe.headers() {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let mut response = Response::new(Full::new(probe.into_body()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
