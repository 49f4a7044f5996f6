//! `RedisRateLimiter` against the Redis at `REDIS_URL`: two limiters (two
//! replicas) share one budget exactly, decisions match the in-memory
//! limiter's, keys expire. Without `REDIS_URL` those tests are skipped.
//! Redis down: fail open (or closed) with one warning, recovery logged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};
use watchpost::ratelimit::{KeyedRateLimiter, Quota, RateLimitRequest, RateLimiter};

use std::future::IntoFuture;
use watchpost::Watchpost;
use watchpost_redis::{Availability, RedisRateLimiter, RedisStore};

use common::{closed_port, lines_about, Redis};
use watchpost_testkit::logs;

/// Generous: the machine running the tests may be busy.
const TIMEOUT: Duration = Duration::from_secs(5);

trait Limiters {
    fn limiter(&self, quota: &str) -> RedisRateLimiter;
}

impl Limiters for Redis {
    fn limiter(&self, quota: &str) -> RedisRateLimiter {
        RedisRateLimiter::builder(&self.url, quota.parse().unwrap())
            .prefix(&self.prefix)
            .timeout(TIMEOUT)
            .build()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_exactly() {
    let Some(redis) = Redis::get("rl") else {
        return;
    };
    let (a, b) = (redis.limiter("10/min"), redis.limiter("10/min"));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { limiter.check("client-1").await })
        })
        .collect();
    let mut decisions = Vec::new();
    for task in tasks {
        decisions.push(task.await.unwrap());
    }
    assert!(a.is_available() && b.is_available());
    let allowed: Vec<_> = decisions.iter().filter(|d| d.allowed).collect();
    assert_eq!(allowed.len(), 10, "{decisions:#?}");
    // Each remaining count from 9 down to 0 was handed out exactly once.
    let mut remaining: Vec<u32> = allowed.iter().map(|d| d.remaining).collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..10).collect::<Vec<_>>());
    for d in decisions.iter().filter(|d| !d.allowed) {
        assert_eq!((d.limit, d.remaining), (10, 0));
        let retry = d.retry_after.unwrap();
        assert!(
            retry > Duration::from_secs(5) && retry <= Duration::from_secs(6),
            "{retry:?}"
        );
        assert!(d.reset_after > Duration::from_secs(59), "{d:?}");
    }
    // Another key has its own budget.
    assert!(b.check("client-2").await.allowed);

    // The key lives until the allowance is full again, no longer.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:rl:client-1", redis.prefix))
        .query(&mut redis.conn())
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
}

#[tokio::test]
async fn decisions_match_the_in_memory_limiter() {
    let Some(redis) = Redis::get("rl") else {
        return;
    };
    for quota in ["5/min", "3/s burst 4", "2/hour burst 5"] {
        let remote = redis.limiter(quota);
        let local = KeyedRateLimiter::new(quota.parse::<Quota>().unwrap());
        let key = format!("same-{quota}");
        for i in 0..8 {
            let (r, l) = (remote.check(&key).await, local.check(&key));
            assert_eq!(
                (r.allowed, r.limit, r.remaining),
                (l.allowed, l.limit, l.remaining),
                "{quota} #{i}"
            );
            match (r.retry_after, l.retry_after) {
                (None, None) => assert_eq!(r.reset_after, l.reset_after, "{quota} #{i}"),
                (Some(rr), Some(lr)) => {
                    // Measured at slightly different instants.
                    let diff = rr.abs_diff(lr);
                    assert!(
                        diff < Duration::from_millis(500),
                        "{quota} #{i}: {rr:?} {lr:?}"
                    );
                    assert!(r.reset_after.abs_diff(l.reset_after) < Duration::from_millis(500));
                }
                other => panic!("{quota} #{i}: {other:?}"),
            }
        }
    }
}

/// Two replicas' HTTP limiters (the policy every adapter applies) on one
/// Redis: per-route budgets shared exactly, keys `{prefix}:rl:{rule}:{ip}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_limiters_share_each_route_budget_through_a_store() {
    let Some(redis) = Redis::get("rl") else {
        return;
    };
    let replica = || {
        RateLimiter::per_ip("5/min".parse().unwrap())
            .route("/api/chat", "2/min".parse().unwrap())
            .store(redis.limiter("5/min"))
    };
    let (a, b) = (replica(), replica());
    let headers = http::HeaderMap::new();
    let peer: IpAddr = "203.0.113.9".parse().unwrap();
    let mut allowed = HashMap::<&str, usize>::new();
    for i in 0..12 {
        for path in ["/", "/api/chat/stream"] {
            let limiter = if i % 2 == 0 { &a } else { &b };
            let outcome = limiter
                .check_request(&RateLimitRequest::new("GET", path, Some(peer), &headers))
                .await;
            *allowed.entry(path).or_default() += usize::from(!outcome.is_rejected());
            if outcome.is_rejected() {
                let retry = outcome.headers().find(|(h, _)| h.as_str() == "retry-after");
                assert!(retry.is_some(), "{path}");
            }
        }
    }
    assert_eq!(allowed["/"], 5, "one budget across both replicas");
    assert_eq!(allowed["/api/chat/stream"], 2, "the route's own budget");
    let mut conn = redis.conn();
    for rule in ["default", "/api/chat"] {
        let key = format!("{}:rl:{rule}:203.0.113.9", redis.prefix);
        let exists: bool = redis::cmd("EXISTS").arg(&key).query(&mut conn).unwrap();
        assert!(exists, "{key}");
    }
}

#[tokio::test]
async fn redis_down_fails_open_with_one_warning() {
    logs::capture_global();
    let addr = closed_port();
    let limiter =
        RedisRateLimiter::builder(&format!("redis://:s3cret@{addr}"), "2/min".parse().unwrap())
            .build()
            .unwrap();
    let start = Instant::now();
    for _ in 0..20 {
        let d = limiter.check("client").await;
        assert!(d.allowed, "{d:?}");
        assert_eq!((d.limit, d.remaining, d.retry_after), (2, 1, None));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(!limiter.is_available());
    let lines = lines_about(addr);
    let warnings: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("shared rate limiting unavailable"))
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("fail open"));
    let all = logs::captured();
    assert!(!all.contains("s3cret"), "{all}");
    assert!(!format!("{limiter:?}").contains("s3cret"));
}

#[tokio::test]
async fn redis_down_fails_closed_when_asked() {
    logs::capture_global();
    let addr = closed_port();
    let limiter = RedisRateLimiter::builder(&format!("redis://{addr}"), "2/min".parse().unwrap())
        .fail_closed(true)
        .build()
        .unwrap();
    for _ in 0..5 {
        let d = limiter.check("client").await;
        assert!(!d.allowed, "{d:?}");
        assert_eq!(d.retry_after, Some(Duration::from_secs(1)));
    }
    let lines = lines_about(addr);
    assert_eq!(
        lines.iter().filter(|l| l.contains("fail closed")).count(),
        1,
        "{lines:#?}"
    );
}

/// A TCP proxy to Redis on `addr`, started later: Redis "comes back".
async fn proxy(addr: SocketAddr, redis: SocketAddr) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(redis).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}

#[tokio::test]
async fn recovery_is_automatic_and_logged_once() {
    let Some(redis) = Redis::get("rl") else {
        return;
    };
    logs::capture_global();
    let redis_addr: SocketAddr = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection_info()
        .addr()
        .to_string()
        .parse()
        .expect("REDIS_URL with an IP address");
    // The proxy has no password to forward, so test without one.
    let addr = closed_port();
    let changes: Arc<Mutex<Vec<Availability>>> = Arc::default();
    let seen = changes.clone();
    let limiter = RedisRateLimiter::builder(&format!("redis://{addr}"), "3/min".parse().unwrap())
        .prefix(&redis.prefix)
        .timeout(TIMEOUT)
        .on_change(move |change| seen.lock().unwrap().push(change))
        .build()
        .unwrap();
    assert!(limiter.check("client").await.allowed);
    assert!(!limiter.is_available());

    proxy(addr, redis_addr).await;
    // Retried after 1 s; keep checking until it is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !limiter.is_available() {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = limiter.check("client").await;
    }
    // The first shared check counted one request of three.
    let d = limiter.check("client").await;
    assert_eq!((d.allowed, d.remaining), (true, 1), "{d:?}");
    assert_eq!(limiter.check("client").await.remaining, 0);
    assert!(!limiter.check("client").await.allowed);

    let lines = lines_about(addr);
    assert_eq!(
        lines.iter().filter(|l| l.contains("again")).count(),
        1,
        "{lines:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("unavailable")).count(),
        1,
        "{lines:#?}"
    );
    // The callback heard of each change once: down, then back.
    let changes = changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0], Availability::Unavailable);
    assert!(matches!(changes[1], Availability::Recovered { .. }));
}

/// actix-web runs one runtime per worker: the connection must not belong
/// to whichever runtime checked first. Through a `Watchpost`, it lives on
/// watchpost's thread; here each check comes from a runtime of its own,
/// gone before the next one checks.
#[test]
fn checks_from_several_runtimes_share_one_connection_that_outlives_them() {
    let Some(redis) = Redis::get("rl") else {
        return;
    };
    let store = RedisStore::builder(&redis.url)
        .prefix(&redis.prefix)
        .limit_timeout(TIMEOUT)
        .build()
        .unwrap();
    let wp = Watchpost::builder()
        .sink(watchpost::alert::MemorySink::new())
        .shared(store.clone())
        .panic_hook(false)
        .build()
        .unwrap();
    let limiter = wp.rate_limiter("5/min".parse().unwrap());
    let headers = http::HeaderMap::new();
    let peer: IpAddr = "203.0.113.50".parse().unwrap();
    let on_new_runtime = |limiter: &RateLimiter| {
        let request = RateLimitRequest::new("GET", "/", Some(peer), &headers);
        let verdict = limiter.check_request(&request);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(verdict.into_future())
    };
    let remaining: Vec<u32> = (0..3)
        .map(|_| {
            let outcome = on_new_runtime(&limiter);
            let d = outcome.decision().unwrap().clone();
            assert!(d.allowed, "{d:?}");
            d.remaining
        })
        .collect();
    assert_eq!(remaining, [4, 3, 2]);
    assert!(store.is_available(), "never fell back");
    assert!(wp.status().shared.unwrap().available);
}
