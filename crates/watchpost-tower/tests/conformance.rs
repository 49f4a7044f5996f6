//! The shared conformance suite, through the tower `HealthService`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;
use watchpost_testkit::{Harness, TestRequest, TestResponse};
use watchpost_tower::HealthService;

struct Tower(HealthService);

impl Harness for Tower {
    async fn call(&self, req: TestRequest) -> TestResponse {
        let mut builder = Request::builder().method(req.method).uri(&req.uri);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        let res = self
            .0
            .clone()
            .oneshot(builder.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

#[tokio::test]
async fn health_probes_conform() {
    watchpost_testkit::health::run(|health| async move { Tower(HealthService::new(health)) }).await;
}
