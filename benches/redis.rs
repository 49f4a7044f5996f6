//! What sharing state through Redis costs, on loopback, against the
//! in-memory equivalents measured in the same run.
//!
//! - `ratelimit_check/memory`: one `RateLimiter::check_request` counted in
//!   memory (client resolution, route, GCRA, the outcome).
//! - `ratelimit_check/redis`: the same request with the counts in a
//!   `RedisRateLimiter` store: one `EVALSHA` round trip per check.
//! - `ratelimit_throughput/redis_64_in_flight`: 64 checks in flight at once
//!   on one multiplexed connection, as a busy server issues them; criterion
//!   reports checks per second (the per-check figure is wall time / checks).
//! - `dedupe_claim/memory` and `dedupe_claim/redis`: one `AlertStore::claim`
//!   of a key already delivered in the window (the suppressed path: a
//!   replica counting its duplicate), the dedupe round trip behind every
//!   alert that reaches the store.
//! - `dedupe_claim/redis_new_key`: a key never seen (`SET NX PX` succeeds).
//!
//! The Redis benches need `REDIS_URL` (they print "skipped: set REDIS_URL"
//! otherwise) and write only under a prefix of their own, deleted at the end.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]
#![allow(clippy::expect_used)] // a bench that cannot set up should stop

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use watchpost::alert::{AlertStore, MemoryStore};
use watchpost::ratelimit::{Quota, RateLimitRequest, RateLimiter};
use watchpost_redis::{RedisRateLimiter, RedisStore};

/// Generous enough that no benchmark key is ever rejected (the reject path
/// costs the same round trip).
const QUOTA: &str = "1000000000/s";
const WINDOW: Duration = Duration::from_secs(3600);
const IN_FLIGHT: u64 = 64;

fn prefix() -> String {
    format!("watchpost-bench:{}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn limiters(url: Option<&str>) -> (RateLimiter, Option<RateLimiter>) {
    let quota: Quota = QUOTA.parse().expect("quota");
    let memory = RateLimiter::per_ip(quota);
    let shared = url.map(|url| {
        let store = RedisRateLimiter::builder(url, quota)
            .prefix(prefix())
            .timeout(Duration::from_secs(5))
            .build()
            .expect("REDIS_URL");
        RateLimiter::per_ip(quota).store(store)
    });
    (memory, shared)
}

fn ratelimit(c: &mut Criterion) {
    let url = std::env::var("REDIS_URL").ok();
    if url.is_none() {
        println!("skipped: set REDIS_URL (only the in-memory benches run)");
    }
    let rt = runtime();
    let (memory, shared) = limiters(url.as_deref());
    let headers = http::HeaderMap::new();
    let peer: IpAddr = "203.0.113.9".parse().expect("ip");
    let request = RateLimitRequest::new("GET", "/api", Some(peer), &headers);

    let mut group = c.benchmark_group("ratelimit_check");
    group.bench_function("memory", |b| {
        b.iter(|| {
            let outcome = memory.check_request(black_box(&request)).ready();
            assert!(outcome.is_some_and(|o| !o.is_rejected()));
        });
    });
    if let Some(shared) = &shared {
        group.bench_function("redis", |b| {
            b.to_async(&rt).iter(|| async {
                let outcome = shared.check_request(black_box(&request)).await;
                assert!(!outcome.is_rejected());
            });
        });
    }
    group.finish();

    let Some(shared) = shared else { return };
    let mut group = c.benchmark_group("ratelimit_throughput");
    group.throughput(Throughput::Elements(IN_FLIGHT));
    group.bench_function("redis_64_in_flight", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let shared = shared.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..IN_FLIGHT)
                        .map(|i| {
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                let headers = http::HeaderMap::new();
                                let peer = IpAddr::from([203, 0, 113, (i % 250) as u8]);
                                let request =
                                    RateLimitRequest::new("GET", "/api", Some(peer), &headers);
                                shared.check_request(&request).await.is_rejected()
                            })
                        })
                        .collect();
                    for task in tasks {
                        assert!(!task.await.expect("task"));
                    }
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

fn dedupe(c: &mut Criterion) {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipped: set REDIS_URL");
        return;
    };
    let rt = runtime();
    let memory = MemoryStore::new();
    let redis = RedisStore::builder(&url)
        .prefix(prefix())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("REDIS_URL");
    let now = SystemTime::now();
    rt.block_on(async {
        memory.claim("hot", now, WINDOW, 0).await.expect("claim");
        redis.claim("hot", now, WINDOW, 0).await.expect("claim");
    });
    assert!(redis.is_available(), "REDIS_URL is set but Redis is down");

    let mut group = c.benchmark_group("dedupe_claim");
    group.bench_function("memory", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(memory.claim("hot", now, WINDOW, 0).await) });
    });
    group.bench_function("redis", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(redis.claim("hot", now, WINDOW, 0).await) });
    });
    let n = AtomicU64::new(0);
    group.bench_function("redis_new_key", |b| {
        b.to_async(&rt).iter(|| async {
            let key = format!("new-{}", n.fetch_add(1, Ordering::Relaxed));
            black_box(redis.claim(&key, now, WINDOW, 0).await)
        });
    });
    group.finish();
    assert!(redis.is_available(), "Redis went away during the bench");
    clean_up(&url);
}

/// Deletes the bench's keys.
fn clean_up(url: &str) {
    let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", prefix()))
        .query(&mut conn)
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = ratelimit, dedupe
}
criterion_main!(benches);
