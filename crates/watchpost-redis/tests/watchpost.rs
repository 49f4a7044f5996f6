//! `RedisStore` as a `Watchpost`'s shared state, in one line: Redis away
//! gives one "Shared state unavailable" incident (however many components
//! notice), one warning, requests still allowed and alerts still sent;
//! Redis back resolves it once. With `REDIS_URL`, the handle still runs on
//! one thread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::IntoFuture;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use watchpost::alert::{Alert, MemorySink, NotificationKind};
use watchpost::ratelimit::RateLimitRequest;
use watchpost::{Watchpost, SHARED_STATE_INCIDENT};
use watchpost_redis::RedisStore;

use common::{closed_port, lines_about, proxy, redis_addr};
use watchpost_testkit::logs;

const HANG: Duration = Duration::from_secs(30);

#[test]
fn redis_away_and_back_is_one_incident_and_nothing_fails() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipped: set REDIS_URL");
        return;
    };
    logs::capture_global();
    let redis_addr = redis_addr(&url);
    let addr = closed_port();
    let sink = MemorySink::new();
    let wp = Watchpost::builder()
        .sink(sink.clone())
        .shared(
            RedisStore::builder(&format!("redis://{addr}"))
                .prefix(format!("watchpost-test:handle:{}", std::process::id()))
                .build()
                .unwrap(),
        )
        .panic_hook(false)
        .build()
        .unwrap();
    let limiter = wp.rate_limiter("100/min".parse().unwrap());
    let headers = http::HeaderMap::new();
    let peer: IpAddr = "203.0.113.60".parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let check = || {
        let verdict =
            limiter.check_request(&RateLimitRequest::new("GET", "/", Some(peer), &headers));
        runtime.block_on(verdict.into_future())
    };

    // Down: both the alert store and the limiter notice; one incident.
    wp.send(Alert::error("Payment provider down"));
    assert!(!check().is_rejected(), "fail open");
    assert!(wp.flush(HANG));
    assert!(!check().is_rejected());
    wp.send(Alert::error("Payment provider down"));
    assert!(wp.flush(HANG));
    let sent = sink.notifications();
    let mut titles: Vec<&str> = sent.iter().map(|n| n.alert().title()).collect();
    // The outage may be noticed first by the alert's claim or by the
    // outbox's look at startup: either order.
    titles.sort_unstable();
    assert_eq!(
        titles,
        ["Payment provider down", "Shared state unavailable"],
        "deduplicated locally, and one incident"
    );
    let incident = sent
        .iter()
        .find(|n| n.key() == SHARED_STATE_INCIDENT)
        .unwrap();
    assert_eq!(incident.kind(), NotificationKind::Firing);
    assert!(
        incident
            .alert()
            .detail_text()
            .unwrap()
            .starts_with(&format!("redis {addr} is unreachable")),
        "{:?}",
        incident.alert().detail_text()
    );
    assert!(!wp.status().shared.unwrap().available);
    let warnings = lines_about(addr)
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "{:#?}", lines_about(addr));

    // Back: resolved once.
    proxy(&runtime, addr, redis_addr);
    let deadline = Instant::now() + HANG;
    while !wp.status().shared.unwrap().available {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(300));
        let _ = check();
    }
    assert!(wp.flush(HANG));
    let sent = sink.notifications();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert_eq!(sent[2].key(), SHARED_STATE_INCIDENT);
    assert!(matches!(sent[2].kind(), NotificationKind::Resolved { .. }));
}
