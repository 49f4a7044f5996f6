//! The HTTP monitor's cost per request, on the system clock (target: under
//! 100 ns over the bare service), measured in one run:
//!
//! - `core/*`: `HttpMonitor::start` + `record` alone, for a 200 and for a
//!   500 (which also counts the route), next to one `Instant::now()` for
//!   scale: the monitor reads quanta's counter twice per request instead.
//! - `axum/*`: a `Router` with one route (`/users/{id}`, answering "ok"),
//!   bare, under a no-op tower layer (what axum charges for any
//!   `Router::layer`) and under `watchpost_axum::HttpMonitorLayer`. The
//!   router is finished with `with_state(())`, as `axum::serve` does:
//!   without it axum applies the layers again on every request.
//! - `actix/*`: the same app in actix-web, bare, under a no-op `wrap_fn`
//!   and under `watchpost_actix::HttpMonitor`, driven through actix's
//!   in-process test service.
//! - `overhead/*`: monitored minus bare per request, for each framework,
//!   and for axum monitored minus the no-op layer (the monitor's own share).
//!   The two apps are timed in alternating batches inside every sample,
//!   because this machine's speed drifts between benchmarks by more than
//!   the difference being measured (on a quiet 2-core VM, `actix/bare` and
//!   `actix/monitored` measured separately came out in either order).
//!
//! Requests are built before the clock starts, in batches of 256; axum's
//! responses are dropped after it stops (as criterion's `iter_batched`
//! does), actix's inside (returning the request to actix's pool, as a
//! server does).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]
#![allow(clippy::expect_used)] // a bench that cannot set up should stop

use std::hint::black_box;
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web, App};
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use watchpost::alert::{Alerter, LogSink};
use watchpost::monitor::HttpMonitor;

const BATCH: u64 = 256;

fn alerter() -> Alerter {
    Alerter::builder()
        .sink(LogSink::new())
        .build()
        .expect("alerter")
}

fn monitor(alerter: &Alerter) -> HttpMonitor {
    HttpMonitor::new(alerter).expect("default configuration")
}

/// Runs `iters` requests in batches, each batch timed by `batch`.
fn batched(iters: u64, mut batch: impl FnMut(u64) -> Duration) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        left -= n;
        elapsed += batch(n);
    }
    elapsed
}

/// The time `monitored` takes over `bare` for `iters` requests, timing
/// them in alternating batches (the order swapped every batch).
fn difference(
    iters: u64,
    mut bare: impl FnMut(u64) -> Duration,
    mut monitored: impl FnMut(u64) -> Duration,
) -> Duration {
    let (mut with, mut without) = (Duration::ZERO, Duration::ZERO);
    let mut left = iters;
    let mut flip = false;
    while left > 0 {
        let n = left.min(BATCH);
        left -= n;
        flip = !flip;
        if flip {
            without += bare(n);
            with += monitored(n);
        } else {
            with += monitored(n);
            without += bare(n);
        }
    }
    // Criterion refuses a zero sample; a batch pair where noise outweighed
    // the difference counts as 1 ns.
    with.saturating_sub(without).max(Duration::from_nanos(1))
}

fn core(c: &mut Criterion) {
    let alerter = alerter();
    let ok = monitor(&alerter);
    let failing = monitor(&alerter);
    let mut group = c.benchmark_group("core");
    group.bench_function("instant_now", |b| b.iter(Instant::now));
    group.bench_function("record_200", |b| {
        b.iter(|| ok.record(ok.start(), black_box(200), "GET", || None::<&str>))
    });
    group.bench_function("record_500", |b| {
        b.iter(|| {
            failing.record(failing.start(), black_box(500), "GET", || {
                Some("/users/{id}")
            })
        })
    });
    group.finish();
}

fn router() -> Router {
    Router::new().route("/users/{id}", get(|| async { "ok" }))
}

fn axum_batch(rt: &Runtime, app: &Router, n: u64) -> Duration {
    let requests: Vec<_> = (0..n)
        .map(|_| {
            Request::get("/users/42")
                .body(Body::empty())
                .expect("request")
        })
        .collect();
    let mut responses = Vec::with_capacity(requests.len());
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        for req in requests {
            responses.push(app.clone().oneshot(req).await.expect("infallible"));
        }
        start.elapsed()
    });
    assert!(responses.iter().all(|res| res.status().is_success()));
    elapsed
}

fn axum_apps(alerter: &Alerter) -> [(&'static str, Router); 3] {
    [
        ("bare", router().with_state(())),
        (
            "noop_layer",
            router()
                .layer(tower::layer::layer_fn(|service| service))
                .with_state(()),
        ),
        (
            "monitored",
            router()
                .layer(watchpost_axum::MonitorLayer::new(monitor(alerter)))
                .with_state(()),
        ),
    ]
}

fn actix_batch<S, B>(system: &actix_rt::SystemRunner, app: &S, n: u64) -> Duration
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let requests: Vec<_> = (0..n)
        .map(|_| test::TestRequest::get().uri("/users/42").to_request())
        .collect();
    system.block_on(async {
        let start = Instant::now();
        for req in requests {
            let res = app.call(req).await.expect("ok");
            assert!(res.status().is_success());
        }
        start.elapsed()
    })
}

fn actix_app() -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new().route("/users/{id}", web::get().to(|| async { "ok" }))
}

fn bench_actix<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    system: &actix_rt::SystemRunner,
    app: &S,
) where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| batched(iters, |n| actix_batch(system, app, n)))
    });
}

fn frameworks(c: &mut Criterion) {
    let alerter = alerter();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let apps = axum_apps(&alerter);
    let mut group = c.benchmark_group("axum");
    for (name, app) in &apps {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| batched(iters, |n| axum_batch(&rt, app, n)))
        });
    }
    group.finish();

    let system = actix_rt::System::new();
    let bare = system.block_on(test::init_service(actix_app()));
    let noop = system.block_on(test::init_service(
        actix_app().wrap_fn(|req, srv| srv.call(req)),
    ));
    let monitored = system.block_on(test::init_service(
        actix_app().wrap(watchpost_actix::Monitor::new(monitor(&alerter))),
    ));
    let mut group = c.benchmark_group("actix");
    bench_actix(&mut group, "bare", &system, &bare);
    bench_actix(&mut group, "noop_middleware", &system, &noop);
    bench_actix(&mut group, "monitored", &system, &monitored);
    group.finish();

    let mut group = c.benchmark_group("overhead");
    // Every sample the same size: many batch pairs each, none of one pair.
    group.sampling_mode(SamplingMode::Flat);
    let (bare_axum, noop_axum, monitored_axum) = (&apps[0].1, &apps[1].1, &apps[2].1);
    group.bench_function("axum", |b| {
        b.iter_custom(|iters| {
            difference(
                iters,
                |n| axum_batch(&rt, bare_axum, n),
                |n| axum_batch(&rt, monitored_axum, n),
            )
        })
    });
    // The monitor's own share: over a no-op layer, which costs what
    // axum charges for any `Router::layer` (a boxed service per route).
    group.bench_function("axum_over_noop_layer", |b| {
        b.iter_custom(|iters| {
            difference(
                iters,
                |n| axum_batch(&rt, noop_axum, n),
                |n| axum_batch(&rt, monitored_axum, n),
            )
        })
    });
    group.bench_function("actix", |b| {
        b.iter_custom(|iters| {
            difference(
                iters,
                |n| actix_batch(&system, &bare, n),
                |n| actix_batch(&system, &monitored, n),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = core, frameworks
}
criterion_main!(benches);
