//! `watchpost_actix::Monitor`: the same counting as the tower layer,
//! with routes named by actix's match patterns, errors that travel as
//! `Err` counted by their status under their route, and the probes kept
//! out of the figures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::time::Duration;

use actix_web::dev::Service;
use actix_web::error::{ErrorBadRequest, ErrorInternalServerError};
use actix_web::http::StatusCode;
use actix_web::{test, web, App, HttpResponse};
use watchpost::alert::{Alerter, MemorySink};
use watchpost::checks::fn_check;
use watchpost::health::HealthChecks;
use watchpost::monitor::ManualClock;
use watchpost_actix::{CatchPanic, Monitor};

/// A monitor on a clock that stands still, and its alerter's sink.
struct Fixture {
    manual: ManualClock,
    sink: MemorySink,
    alerter: Alerter,
    monitor: watchpost::monitor::HttpMonitor,
}

fn fixture() -> Fixture {
    let manual = ManualClock::new();
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .sink(sink.clone())
        .clock(manual.clock())
        .build()
        .unwrap();
    let monitor = watchpost::monitor::HttpMonitor::builder(&alerter)
        .clock(manual.clock())
        .build()
        .unwrap();
    Fixture {
        manual,
        sink,
        alerter,
        monitor,
    }
}

fn routes(top: &[(&str, u64)]) -> Vec<(String, u64)> {
    top.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect()
}

async fn status<S, B>(app: &S, req: test::TestRequest) -> u16
where
    S: Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    match test::try_call_service(app, req.to_request()).await {
        Ok(res) => res.status().as_u16(),
        Err(err) => err.as_response_error().status_code().as_u16(),
    }
}

#[actix_web::test]
async fn five_hundreds_are_counted_per_matched_route() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            .route("/", web::get().to(|| async { "hello" }))
            .route(
                "/users/{id}",
                web::get().to(|| async { HttpResponse::InternalServerError().finish() }),
            )
            .route(
                "/users/{id}",
                web::post().to(|| async { HttpResponse::InternalServerError().finish() }),
            )
            .route(
                "/orders/{id}/items",
                web::get().to(|| async { HttpResponse::ServiceUnavailable().finish() }),
            )
            .route(
                "/busy",
                web::get().to(|| async { HttpResponse::TooManyRequests().finish() }),
            )
            .wrap(Monitor::new(f.monitor.clone())),
    )
    .await;

    let calls = [
        (test::TestRequest::get().uri("/"), 200),
        (test::TestRequest::get().uri("/users/1"), 500),
        (test::TestRequest::get().uri("/users/2"), 500),
        (test::TestRequest::post().uri("/users/3"), 500),
        (test::TestRequest::get().uri("/orders/7/items"), 503),
        (test::TestRequest::get().uri("/busy"), 429),
    ];
    for (req, expected) in calls {
        assert_eq!(status(&app, req).await, expected);
    }

    let s = f.monitor.snapshot();
    assert_eq!((s.requests, s.errors), (6, 4));
    assert_eq!(
        s.top_routes,
        routes(&[
            ("GET /users/{id}", 2),
            ("GET /orders/{id}/items", 1),
            ("POST /users/{id}", 1),
        ])
    );
}

#[actix_web::test]
async fn an_unmatched_404_is_not_counted_but_a_routes_404_is() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            .route(
                "/users/{id}",
                web::get().to(|| async { HttpResponse::NotFound().finish() }),
            )
            .wrap(Monitor::new(f.monitor.clone())),
    )
    .await;

    // An unknown path: a scanner's 404s would dilute the 5xx rate.
    assert_eq!(
        status(&app, test::TestRequest::get().uri("/nope")).await,
        404
    );
    // A route's own 404 (no such user) is a request like any other.
    assert_eq!(
        status(&app, test::TestRequest::get().uri("/users/7")).await,
        404
    );
    let s = f.monitor.snapshot();
    assert_eq!((s.requests, s.errors), (1, 0));
    assert!(s.top_routes.is_empty());
}

#[actix_web::test]
async fn a_handler_err_counts_as_a_5xx_of_its_route() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            .route(
                "/reports/{id}",
                web::get().to(|| async {
                    Err::<String, _>(ErrorInternalServerError("report store unreachable"))
                }),
            )
            .wrap(Monitor::new(f.monitor.clone())),
    )
    .await;

    assert_eq!(
        status(&app, test::TestRequest::get().uri("/reports/9")).await,
        500
    );
    let s = f.monitor.snapshot();
    assert_eq!((s.requests, s.errors), (1, 1));
    assert_eq!(s.top_routes, routes(&[("GET /reports/{id}", 1)]));
}

#[actix_web::test]
async fn an_err_from_inner_middleware_counts_by_its_status() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            .route("/{any}", web::get().to(|| async { "unreachable" }))
            // Middleware answering through actix's error path.
            .wrap_fn(|req, srv| {
                let err = match req.path() {
                    "/fail" => Some(ErrorInternalServerError("pool closed")),
                    "/reject" => Some(ErrorBadRequest("bad signature")),
                    _ => None,
                };
                let res = err.map_or_else(|| Ok(srv.call(req)), Err);
                async move { res?.await }
            })
            .wrap(Monitor::new(f.monitor.clone())),
    )
    .await;

    for (path, expected) in [("/fail", 500), ("/reject", 400)] {
        let req = test::TestRequest::get().uri(path).to_request();
        let err = test::try_call_service(&app, req).await.err().unwrap();
        assert_eq!(err.as_response_error().status_code(), expected);
    }

    let s = f.monitor.snapshot();
    assert_eq!((s.requests, s.errors), (2, 1));
    // actix drops the request with the error; its route is still known.
    assert_eq!(s.top_routes, routes(&[("GET /{any}", 1)]));
}

async fn panics() -> String {
    actix_web::rt::task::yield_now().await;
    panic!("stock count went negative");
}

#[actix_web::test]
async fn a_panic_caught_inside_the_monitor_is_a_request_not_a_5xx() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            .route("/orders/{id}", web::get().to(panics))
            .route("/", web::get().to(|| async { "hello" }))
            // The monitor outside CatchPanic: it sees the panic's 500, and
            // counts it as a request; the panic has an alert of its own.
            .wrap(CatchPanic::new())
            .wrap(Monitor::new(f.monitor.clone())),
    )
    .await;

    assert_eq!(
        status(&app, test::TestRequest::get().uri("/orders/1")).await,
        500
    );
    // The worker serves on, and the next request is counted too.
    assert_eq!(status(&app, test::TestRequest::get().uri("/")).await, 200);
    let s = f.monitor.snapshot();
    assert_eq!((s.requests, s.errors), (2, 0));
    assert!(s.top_routes.is_empty(), "{s:?}");
}

fn failing_readiness() -> HealthChecks {
    HealthChecks::builder()
        .readiness("db", fn_check(|| async { false }))
        .build()
        .unwrap()
}

#[actix_web::test]
async fn probes_outside_the_monitored_scope_are_not_counted() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            // The probes first: the empty scope below matches every path.
            .configure(watchpost_actix::configure(failing_readiness()))
            .service(
                web::scope("")
                    .route(
                        "/users/{id}",
                        web::get().to(|| async { HttpResponse::InternalServerError().finish() }),
                    )
                    .route("/", web::get().to(|| async { "hello" }))
                    .wrap(Monitor::new(f.monitor.clone())),
            ),
    )
    .await;

    for _ in 0..3 {
        assert_eq!(
            status(&app, test::TestRequest::get().uri("/readyz")).await,
            503
        );
    }
    assert_eq!(
        status(&app, test::TestRequest::get().uri("/livez")).await,
        200
    );
    assert_eq!(
        status(&app, test::TestRequest::get().uri("/users/5")).await,
        500
    );
    assert_eq!(status(&app, test::TestRequest::get().uri("/")).await, 200);

    let s = f.monitor.snapshot();
    assert_eq!((s.requests, s.errors), (2, 1));
    // The scope's empty prefix leaves the pattern as written.
    assert_eq!(s.top_routes, routes(&[("GET /users/{id}", 1)]));
}

#[actix_web::test]
async fn probes_under_an_app_wide_monitor_are_not_counted() {
    // A failing readiness probe is a signal, not a server error: the
    // monitor can wrap the whole app.
    let f = fixture();
    let app = test::init_service(
        App::new()
            .configure(watchpost_actix::configure(failing_readiness()))
            .wrap(Monitor::new(f.monitor.clone())),
    )
    .await;

    for _ in 0..3 {
        assert_eq!(
            status(&app, test::TestRequest::get().uri("/readyz")).await,
            503
        );
    }
    let s = f.monitor.snapshot();
    assert_eq!((s.requests, s.errors), (0, 0));
}

#[actix_web::test]
async fn a_burst_of_500s_fires_one_incident() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            .route(
                "/error",
                web::get().to(|| async { HttpResponse::InternalServerError().finish() }),
            )
            .wrap(Monitor::new(f.monitor.clone())),
    )
    .await;

    for _ in 0..90 {
        let req = test::TestRequest::get().uri("/error").to_request();
        assert_eq!(
            test::call_service(&app, req).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    f.manual.advance(Duration::from_secs(30));
    assert!(f.alerter.flush(Duration::from_secs(5)));
    let keys: Vec<String> = f
        .sink
        .notifications()
        .iter()
        .map(|n| n.key().to_owned())
        .collect();
    assert_eq!(keys, ["http:5xx"]);
    assert!(f.alerter.is_firing(f.monitor.error_rate_key()));
}
