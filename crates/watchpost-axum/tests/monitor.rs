//! The HTTP monitor under axum: routes are the matched patterns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use watchpost::alert::Alerter;
use watchpost::health::HealthChecks;
use watchpost::monitor::{HttpMonitor, ManualClock};
use watchpost_axum::MonitorLayer;

#[tokio::test]
async fn errors_are_counted_per_matched_route_and_probes_are_not_counted() {
    let manual = ManualClock::new();
    let alerter = Alerter::builder().build().unwrap();
    let monitor = HttpMonitor::builder(&alerter)
        .clock(manual.clock())
        .build()
        .unwrap();
    let health = HealthChecks::builder()
        .readiness("db", watchpost::checks::fn_check(|| async { false }))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/users/{id}",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route("/", get(|| async { "ok" }))
        .layer(MonitorLayer::new(monitor.clone()))
        .merge(watchpost_axum::routes(health));
    for uri in [
        "/users/1", "/users/2", "/users/3", "/", "/readyz", "/healthz",
    ] {
        let res = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        if uri.ends_with('z') {
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    let s = monitor.snapshot();
    assert_eq!((s.requests, s.errors), (4, 3));
    assert_eq!(s.top_routes, [("GET /users/{id}".to_owned(), 3)]);
}
