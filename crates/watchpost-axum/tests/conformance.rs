//! The shared conformance suite, through an axum `Router` with state and
//! routes of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use watchpost_testkit::{Harness, TestRequest, TestResponse};

struct Axum(Router);

impl Harness for Axum {
    async fn call(&self, req: TestRequest) -> TestResponse {
        let mut builder = Request::builder().method(req.method).uri(&req.uri);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        let res = self
            .0
            .clone()
            .oneshot(builder.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

#[derive(Clone)]
struct AppState {
    greeting: &'static str,
}

#[tokio::test]
async fn health_probes_conform() {
    watchpost_testkit::health::run(|health| async move {
        let app =
            Router::new()
                .route(
                    "/",
                    get(
                        |axum::extract::State(s): axum::extract::State<AppState>| async move {
                            s.greeting
                        },
                    ),
                )
                .merge(watchpost_axum::routes(health))
                .with_state(AppState { greeting: "hello" });
        Axum(app)
    })
    .await;
}

#[tokio::test]
async fn app_routes_still_work_next_to_probes() {
    let health = watchpost_testkit::health::Fixture::Passing.build();
    let app: Router = Router::new()
        .route("/", get(|| async { "hello" }))
        .merge(watchpost_axum::routes(health));
    let res = Axum(app)
        .call(TestRequest {
            method: "GET",
            uri: "/".into(),
            headers: vec![],
        })
        .await;
    assert_eq!((res.status, res.body.as_slice()), (200, &b"hello"[..]));
}
