//! The shared conformance suite through plain tower: `HealthService`, and
//! `RateLimitLayer` over a service that routes probes to it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use tower::util::BoxCloneService;
use tower::{service_fn, Layer, ServiceExt};
use watchpost_testkit::{Harness, TestRequest, TestResponse};
use watchpost_tower::{HealthService, RateLimitLayer, SocketAddrPeer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Tower<S>(S);

impl<S, B> Harness for Tower<S>
where
    S: tower::Service<Request<Empty<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    async fn call(&self, req: TestRequest) -> TestResponse {
        let mut builder = Request::builder().method(req.method).uri(&req.uri);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.as_slice());
        }
        let mut request = builder.body(Empty::<Bytes>::new()).unwrap();
        if let Some(peer) = req.peer {
            request.extensions_mut().insert(peer);
        }
        let res = self.0.clone().oneshot(request).await.unwrap();
        let status = res.status().as_u16();
        let headers: Vec<(String, Vec<u8>)> = res
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = match res.into_body().collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => panic!("body error"),
        };
        TestResponse::new(
            status,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            body,
        )
    }
}

#[tokio::test]
async fn health_probes_conform() {
    watchpost_testkit::health::run(|health| async move { Tower(HealthService::new(health)) }).await;
}

/// The app every rate-limiting run mounts.
async fn rate_limited(fixture: watchpost_testkit::rate_limit::Fixture) -> impl Harness {
    let health = HealthService::new(fixture.health);
    let app = service_fn(move |req: Request<Empty<Bytes>>| {
        let health = health.clone();
        async move {
            if health.get_ref().is_probe_path(req.uri().path()) {
                health.oneshot(req).await
            } else {
                Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        }
    });
    let svc = RateLimitLayer::<SocketAddrPeer>::new(fixture.limiter).layer(app);
    Tower(BoxCloneService::new(svc))
}

#[tokio::test]
async fn rate_limiting_conforms() {
    watchpost_testkit::rate_limit::run(rate_limited).await;
}

#[tokio::test]
async fn rate_limiting_through_a_shared_store_conforms() {
    watchpost_testkit::rate_limit::run_shared(rate_limited).await;
}
