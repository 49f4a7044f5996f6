//! The shared conformance suite through an actix-web `App`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::{test, web, App};
use watchpost_testkit::{Harness, TestRequest, TestResponse};

struct Actix<S>(S);

impl<S, B> Harness for Actix<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    async fn call(&self, req: TestRequest) -> TestResponse {
        let method = actix_web::http::Method::from_bytes(req.method.as_bytes()).unwrap();
        let mut builder = test::TestRequest::default().method(method).uri(&req.uri);
        for (name, value) in req.headers {
            builder = builder.append_header((name, HeaderValue::from_bytes(&value).unwrap()));
        }
        if let Some(peer) = req.peer {
            builder = builder.peer_addr(peer);
        }
        let res = test::call_service(&self.0, builder.to_request()).await;
        let status = res.status().as_u16();
        let headers: Vec<(String, Vec<u8>)> = res
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = test::read_body(res).await.to_vec();
        TestResponse::new(
            status,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            body,
        )
    }
}

#[actix_web::test]
async fn health_probes_conform() {
    watchpost_testkit::health::run(|health| async move {
        let app = App::new()
            .route("/", web::get().to(|| async { "hello" }))
            .configure(watchpost_actix::configure(health));
        Actix(test::init_service(app).await)
    })
    .await;
}

/// The app every rate-limiting run mounts.
async fn rate_limited(fixture: watchpost_testkit::rate_limit::Fixture) -> impl Harness {
    let app = App::new()
        .configure(watchpost_actix::configure(fixture.health))
        .default_service(web::to(|| async { "ok" }))
        .wrap(watchpost_actix::RateLimit::new(fixture.limiter));
    Actix(test::init_service(app).await)
}

#[actix_web::test]
async fn rate_limiting_conforms() {
    watchpost_testkit::rate_limit::run(rate_limited).await;
}

#[actix_web::test]
async fn rate_limiting_through_a_shared_store_conforms() {
    watchpost_testkit::rate_limit::run_shared(rate_limited).await;
}
