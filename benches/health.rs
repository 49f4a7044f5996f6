//! Health check benchmarks.
//!
//! - `evaluate/one_50ms_check` vs `evaluate/five_50ms_checks`: checks run
//!   concurrently, so five 50 ms checks should cost about one (target ratio
//!   ≤ 1.1), not five.
//! - `service/*`: the per-request cost of the tower `HealthService` answering
//!   from a cached report, next to a hand-written `/healthz` that returns a
//!   static body (the baseline a user would otherwise write).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]
#![allow(clippy::expect_used)] // a bench that cannot set up should stop

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{Empty, Full};
use tower::{service_fn, ServiceExt};
use watchpost::checks::fn_check;
use watchpost::health::{HealthChecks, Probe};
use watchpost_tower::HealthService;

fn sleeping_checks(n: usize) -> HealthChecks {
    (0..n)
        .fold(HealthChecks::builder(), |b, i| {
            b.readiness(
                format!("check-{i}"),
                fn_check(|| async { tokio::time::sleep(Duration::from_millis(50)).await }),
            )
        })
        .cache_for(Duration::ZERO) // every evaluation runs the checks
        .build()
        .expect("valid configuration")
}

fn evaluate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("evaluate");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for (name, n) in [("one_50ms_check", 1), ("five_50ms_checks", 5)] {
        let health = sleeping_checks(n);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| health.evaluate(Probe::Readiness))
        });
    }
    group.finish();
}

fn service(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let health = ["postgres", "redis", "upstream"]
        .into_iter()
        .fold(HealthChecks::builder(), |b, name| {
            b.readiness(name, fn_check(|| async { true }))
        })
        .cache_for(Duration::from_secs(3600))
        .build()
        .expect("valid configuration");
    let svc = HealthService::new(health);
    let request = || {
        Request::get("/readyz")
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    rt.block_on(svc.clone().oneshot(request()))
        .expect("warm the cache");

    let mut group = c.benchmark_group("service");
    group.bench_function("watchpost_cached_readyz", |b| {
        b.to_async(&rt).iter(|| svc.clone().oneshot(request()))
    });
    let hand_written = service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
            br#"{"status":"ok"}"#,
        ))))
    });
    group.bench_function("hand_written_static_healthz", |b| {
        b.to_async(&rt).iter(|| hand_written.oneshot(request()))
    });
    group.finish();
}

criterion_group!(benches, evaluate, service);
criterion_main!(benches);
