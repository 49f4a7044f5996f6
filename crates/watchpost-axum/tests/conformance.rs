//! The shared conformance suite through an axum `Router` with state and
//! routes of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use watchpost_axum::{ClientIp, RateLimitLayer};
use watchpost_testkit::{Harness, TestRequest, TestResponse};

struct Axum(Router);

impl Harness for Axum {
    async fn call(&self, req: TestRequest) -> TestResponse {
        let mut builder = Request::builder().method(req.method).uri(&req.uri);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.as_slice());
        }
        let mut request = builder.body(Body::empty()).unwrap();
        if let Some(peer) = req.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let res = self.0.clone().oneshot(request).await.unwrap();
        let status = res.status().as_u16();
        let headers: Vec<(String, Vec<u8>)> = res
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        TestResponse::new(
            status,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            body,
        )
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

/// The app every rate-limiting run mounts.
async fn rate_limited(fixture: watchpost_testkit::rate_limit::Fixture) -> impl Harness {
    let app = Router::new()
        .fallback(|| async { "ok" })
        .merge(watchpost_axum::routes(fixture.health))
        .layer(RateLimitLayer::new(fixture.limiter));
    Axum(app)
}

#[tokio::test]
async fn rate_limiting_conforms() {
    watchpost_testkit::rate_limit::run(rate_limited).await;
}

#[tokio::test]
async fn rate_limiting_through_a_shared_store_conforms() {
    watchpost_testkit::rate_limit::run_shared(rate_limited).await;
}

/// The axum way to limit one route and method: `route_layer` on the
/// method's handler; the app's authentication (a middleware) in front.
#[tokio::test]
async fn limits_per_route_method_and_key_conform() {
    use axum::middleware::{self, Next};
    use axum::routing::post;
    use watchpost::ratelimit::RateLimitKey;
    use watchpost_testkit::keys::{user_key, USER_HEADER};

    async fn authenticate(mut req: Request<Body>, next: Next) -> axum::response::Response {
        if let Some(user) = user_key(req.headers().get(USER_HEADER).map(|v| v.as_bytes())) {
            req.extensions_mut().insert::<RateLimitKey>(user);
        }
        next.run(req).await
    }

    watchpost_testkit::keys::run(|fixture| async move {
        let app = Router::new()
            .route(
                "/api/chat",
                post(|| async { "chat" }).route_layer(RateLimitLayer::new(fixture.chat)),
            )
            .route(
                "/api/data",
                get(|| async { "data" }).route_layer(RateLimitLayer::new(fixture.by_api_key)),
            )
            .route(
                "/api/me",
                get(|| async { "me" })
                    .route_layer(RateLimitLayer::new(fixture.by_user))
                    .layer(middleware::from_fn(authenticate)),
            )
            .route("/", get(|| async { "home" }));
        Axum(app)
    })
    .await;
}

#[tokio::test]
async fn client_ip_extractor_matches_the_limiter() {
    let fixture = watchpost_testkit::rate_limit::fixture();
    let app = Router::new()
        .route(
            "/ip",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .layer(RateLimitLayer::new(fixture.limiter));
    let without_layer: Router = Router::new().route(
        "/ip",
        get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
    );
    for app in [app, without_layer] {
        let res = Axum(app)
            .call(TestRequest {
                method: "GET",
                uri: "/ip".into(),
                headers: vec![("x-forwarded-for", b"6.6.6.6, 198.51.100.7".to_vec())],
                peer: Some("10.0.0.1:1234".parse().unwrap()),
            })
            .await;
        assert_eq!(
            (res.status, res.body.as_slice()),
            (200, &b"198.51.100.7"[..])
        );
    }
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
            peer: None,
        })
        .await;
    assert_eq!((res.status, res.body.as_slice()), (200, &b"hello"[..]));
}

#[tokio::test]
async fn handler_panics_conform() {
    use axum::extract::Path;
    use watchpost_axum::CatchPanicLayer;
    use watchpost_testkit::panics;

    panics::run(|fixture| async move {
        let app: Router = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route("/panic/{id}", get(panics::str_panic))
            .route(
                "/panic-string/{id}",
                get(|Path(id): Path<String>| panics::string_panic(id)),
            )
            .route("/panic-any", get(panics::other_panic))
            .layer(CatchPanicLayer::new().alerter(&fixture.alerter));
        Axum(app)
    })
    .await;
}

/// `GET /reports/{id}`'s error: the idiomatic axum way, an error type that
/// is a response.
struct ReportError(&'static str);

impl axum::response::IntoResponse for ReportError {
    fn into_response(self) -> axum::response::Response {
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, self.0).into_response()
    }
}

#[tokio::test]
async fn http_monitor_conforms() {
    use axum::http::StatusCode;
    use axum::routing::post;
    use watchpost_axum::{CatchPanicLayer, MonitorLayer};
    use watchpost_testkit::monitor;

    monitor::run(|fixture| async move {
        let app: Router = Router::new()
            .route(
                "/users/{id}",
                get(|| async { "user" })
                    .merge(post(|| async { StatusCode::INTERNAL_SERVER_ERROR })),
            )
            .route(
                "/reports/{id}",
                get(|| async { Err::<String, _>(ReportError(monitor::REPORT_ERROR)) }),
            )
            .route("/crash/{id}", get(monitor::crash))
            // Before `.layer`, so that unmatched requests are counted too.
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(CatchPanicLayer::new())
            .layer(MonitorLayer::new(fixture.monitor))
            .merge(watchpost_axum::routes(fixture.health));
        Axum(app)
    })
    .await;
}

/// A `Watchpost`'s layers and probes, mounted as the crate docs say.
#[tokio::test]
async fn the_handle_gives_one_message_for_one_bug() {
    use axum::http::StatusCode;
    use watchpost_axum::WatchpostExt;

    watchpost_testkit::handle::run(|fixture| async move {
        let wp = fixture.watchpost;
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/panic", get(watchpost_testkit::panics::str_panic))
            .route(
                "/error",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .merge(wp.routes())
            .layer(wp.layers());
        Axum(app)
    })
    .await;
}
