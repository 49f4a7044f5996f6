//! Rate limiting overhead per request, measured in one run:
//!
//! - `tower/*`: an axum app (one handler answering "ok") bare, under our
//!   `RateLimitLayer`, and under tower_governor with the same quota, for one
//!   client and for 100,000 clients. Requests come from a trusted proxy
//!   (peer 10.0.0.1) with `X-Forwarded-For`, so both resolve the client from
//!   the header: ours walks it from the right through trusted proxies,
//!   tower_governor's `SmartIpKeyExtractor` takes the leftmost entry.
//!   tower_governor runs without and with its quota headers (`use_headers`);
//!   ours always sends them.
//! - `actix/*`: an actix-web app bare and under our `RateLimit` middleware.
//!
//! The quota is large enough that every request is allowed: this measures
//! the cost on the path every request takes.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]
#![allow(clippy::expect_used)] // a bench that cannot set up should stop

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request};
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tower::ServiceExt;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::SmartIpKeyExtractor;
use tower_governor::GovernorLayer;
use watchpost::ratelimit::{Quota, RateLimiter};

const PROXY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
const ALLOW_ALL: u32 = 1_000_000_000;

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn clients(n: u32) -> Vec<HeaderValue> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0xCB00_0000_u32 + i); // 203.0.0.0 + i
            HeaderValue::from_str(&ip.to_string()).expect("valid header")
        })
        .collect()
}

fn request(xff: &HeaderValue) -> Request<Body> {
    let mut req = Request::get("/")
        .header("x-forwarded-for", xff.clone())
        .body(Body::empty())
        .expect("request");
    req.extensions_mut().insert(ConnectInfo(PROXY));
    req
}

fn tower(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let quota = Quota::per_second(NonZeroU32::new(ALLOW_ALL).expect("non-zero"));
    let ours = app().layer(watchpost_axum::RateLimitLayer::new(RateLimiter::per_ip(
        quota,
    )));
    let governor_config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(ALLOW_ALL)
        .key_extractor(SmartIpKeyExtractor)
        .finish()
        .expect("config");
    let theirs = app().layer(GovernorLayer::new(governor_config));
    let governor_headers = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(ALLOW_ALL)
        .key_extractor(SmartIpKeyExtractor)
        .use_headers()
        .finish()
        .expect("config");
    let theirs_headers = app().layer(GovernorLayer::new(governor_headers));
    let apps = [
        ("bare", app()),
        ("watchpost", ours),
        ("tower_governor", theirs),
        ("tower_governor_use_headers", theirs_headers),
    ];

    let mut group = c.benchmark_group("tower");
    for n in [1_u32, 100_000] {
        let clients = clients(n);
        for (name, app) in &apps {
            let next = Cell::new(0_usize);
            group.bench_with_input(
                BenchmarkId::new(*name, format!("{n}_clients")),
                &n,
                |b, _| {
                    b.to_async(&rt).iter(|| {
                        let i = next.get();
                        next.set((i + 1) % clients.len());
                        let res = app.clone().oneshot(request(&clients[i]));
                        async move {
                            let res = res.await.expect("infallible");
                            assert!(res.status().is_success());
                        }
                    })
                },
            );
        }
    }
    group.finish();
}

fn actix(c: &mut Criterion) {
    use actix_web::{test, web, App};

    let quota = Quota::per_second(NonZeroU32::new(ALLOW_ALL).expect("non-zero"));
    let rate_limit = watchpost_actix::RateLimit::new(RateLimiter::per_ip(quota));
    let clients = clients(100_000);
    let mut group = c.benchmark_group("actix");
    for name in ["bare", "watchpost"] {
        group.bench_function(BenchmarkId::new(name, "100000_clients"), |b| {
            b.iter_custom(|iters| {
                actix_rt::System::new().block_on(async {
                    let handler = || async { "ok" };
                    let elapsed;
                    if name == "bare" {
                        let app =
                            test::init_service(App::new().route("/", web::get().to(handler))).await;
                        let start = Instant::now();
                        for i in 0..iters {
                            let req = actix_request(&clients[(i as usize) % clients.len()]);
                            assert!(test::call_service(&app, req).await.status().is_success());
                        }
                        elapsed = start.elapsed();
                    } else {
                        let app = test::init_service(
                            App::new()
                                .wrap(rate_limit.clone())
                                .route("/", web::get().to(handler)),
                        )
                        .await;
                        let start = Instant::now();
                        for i in 0..iters {
                            let req = actix_request(&clients[(i as usize) % clients.len()]);
                            assert!(test::call_service(&app, req).await.status().is_success());
                        }
                        elapsed = start.elapsed();
                    }
                    elapsed
                })
            })
        });
    }
    group.finish();
}

fn actix_request(xff: &HeaderValue) -> actix_http::Request {
    actix_web::test::TestRequest::get()
        .uri("/")
        .insert_header(("x-forwarded-for", xff.to_str().expect("ascii")))
        .peer_addr(PROXY)
        .to_request()
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = tower, actix
}
criterion_main!(benches);
