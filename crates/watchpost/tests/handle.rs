//! The `Watchpost` handle: one clock drives a dependency going down, the
//! thresholds, the incident and its resolution with no probe and no sleep;
//! the limiters it makes share its clock and exempt its probes; dropping it
//! flushes; its status says what runs.

#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use watchpost::alert::{Alert, DeliverFuture, MemorySink, Notification, NotificationKind, Sink};
use watchpost::checks::fn_check;
use watchpost::health::Probe;
use watchpost::ratelimit::RateLimitRequest;
use watchpost::{ManualClock, Watchpost};

/// Generous: only catches a hang.
const HANG: Duration = Duration::from_secs(30);

/// A check that passes while `up` is on, and counts its runs.
fn switch(up: &Arc<AtomicBool>, runs: &Arc<AtomicUsize>) -> impl watchpost::health::Check {
    let (up, runs) = (up.clone(), runs.clone());
    fn_check(move || {
        runs.fetch_add(1, Ordering::SeqCst);
        let up = up.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err("connection refused")
            }
        }
    })
}

#[test]
fn a_dependency_going_down_fires_and_resolves_by_advance_alone() {
    let manual = ManualClock::new();
    let sink = MemorySink::new();
    let (up, runs) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let wp = Watchpost::builder()
        .clock(manual.clock())
        .sink(sink.clone())
        .readiness("postgres", switch(&up, &runs))
        .check_interval(Duration::from_secs(10))
        .health(|h| h.fail_after(2).recover_after(2))
        .panic_hook(false)
        .build()
        .unwrap();

    // The first run starts with the handle; then one run per 10 s.
    manual.tick();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    manual.advance(Duration::from_secs(30));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        4,
        "one run every 10 s, no probe"
    );
    assert!(wp.flush(HANG));
    assert!(sink.is_empty());

    // Down: the first failure is under fail_after (2).
    up.store(false, Ordering::SeqCst);
    manual.advance(Duration::from_secs(10));
    assert!(wp.flush(HANG));
    assert!(sink.is_empty(), "one failure is not an incident yet");
    assert!(!wp.alerter().is_firing("health:postgres"));
    manual.advance(Duration::from_secs(10));
    assert!(wp.flush(HANG));
    assert_eq!(sink.len(), 1);
    assert_eq!(sink.notifications()[0].kind(), NotificationKind::Firing);
    assert_eq!(sink.notifications()[0].key(), "health:postgres");
    // Probes answer from the last run, without running the check.
    let before = runs.load(Ordering::SeqCst);
    let readiness = run(wp.health().evaluate(Probe::Readiness));
    assert_eq!(readiness.http_status(), 503);
    assert_eq!(runs.load(Ordering::SeqCst), before);

    // Staying down sends nothing more.
    manual.advance(Duration::from_secs(60));
    assert!(wp.flush(HANG));
    assert_eq!(sink.len(), 1);

    // Back: the first pass is under recover_after (2).
    up.store(true, Ordering::SeqCst);
    manual.advance(Duration::from_secs(10));
    assert!(wp.flush(HANG));
    assert_eq!(sink.len(), 1, "one pass is not a recovery yet");
    manual.advance(Duration::from_secs(10));
    assert!(wp.flush(HANG));
    let sent = sink.notifications();
    assert_eq!(sent.len(), 2);
    assert!(matches!(sent[1].kind(), NotificationKind::Resolved { .. }));
    // The incident lasted from the second failure (t = 50 s) to the second
    // pass (t = 130 s), in virtual time.
    assert_eq!(sent[1].duration_line().as_deref(), Some("lasted 1m 20s"));
}

/// Runs a future to completion on a small runtime of its own.
fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn the_handles_limiters_share_its_clock_and_exempt_its_probes() {
    let manual = ManualClock::new();
    let wp = Watchpost::builder()
        .clock(manual.clock())
        .sink(MemorySink::new())
        .rate_limit("2/min".parse().unwrap())
        .panic_hook(false)
        .build()
        .unwrap();
    let limiter = wp.app_rate_limiter().unwrap();
    let headers = http::HeaderMap::new();
    let peer: IpAddr = "203.0.113.7".parse().unwrap();
    let check = |path: &str| {
        limiter
            .check_request(&RateLimitRequest::new("GET", path, Some(peer), &headers))
            .ready()
            .unwrap()
    };
    assert!(!check("/").is_rejected());
    assert!(!check("/").is_rejected());
    assert!(check("/").is_rejected());
    for _ in 0..10 {
        assert!(
            check("/readyz").decision().is_none(),
            "probes are not counted"
        );
    }
    // The limiter reads the handle's clock: 30 s later one request is back.
    manual.advance(Duration::from_secs(30));
    assert!(!check("/").is_rejected());
    assert!(check("/").is_rejected());

    let chat = wp.rate_limiter("1/min".parse().unwrap());
    let ok = chat.check_request(&RateLimitRequest::new(
        "POST",
        "/api/chat",
        Some(peer),
        &headers,
    ));
    assert!(!ok.ready().unwrap().is_rejected());
}

/// A sink that takes `delay` per message.
#[derive(Clone, Debug)]
struct Slow {
    delay: Duration,
    delivered: Arc<AtomicUsize>,
}

impl Sink for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    fn deliver<'a>(&'a self, _: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.delivered.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

fn early_return(wp: Watchpost) -> Result<(), String> {
    wp.send(Alert::error("Payment provider down"));
    Err("config file missing".to_owned())?;
    unreachable!()
}

#[test]
fn dropping_the_handle_flushes_even_on_an_early_return() {
    let delivered = Arc::new(AtomicUsize::new(0));
    let wp = Watchpost::builder()
        .sink(Slow {
            delay: Duration::from_millis(200),
            delivered: delivered.clone(),
        })
        .panic_hook(false)
        .build()
        .unwrap();
    assert!(early_return(wp).is_err());
    assert_eq!(
        delivered.load(Ordering::SeqCst),
        1,
        "delivered before the drop returned"
    );
}

#[test]
fn the_flush_on_drop_is_bounded() {
    let delivered = Arc::new(AtomicUsize::new(0));
    let wp = Watchpost::builder()
        .sink(Slow {
            delay: Duration::from_secs(3600),
            delivered: delivered.clone(),
        })
        .flush_timeout(Duration::from_millis(100))
        .panic_hook(false)
        .build()
        .unwrap();
    wp.send(Alert::error("Payment provider down"));
    let started = std::time::Instant::now();
    drop(wp);
    assert!(started.elapsed() < HANG);
    assert_eq!(delivered.load(Ordering::SeqCst), 0);
}

#[test]
fn status_says_what_runs() {
    let manual = ManualClock::new();
    let wp = Watchpost::builder()
        .clock(manual.clock())
        .sink(MemorySink::new())
        .readiness("db", fn_check(|| async { true }))
        .panic_hook(false)
        .build()
        .unwrap();
    manual.tick();
    manual.advance(Duration::from_secs(3));
    let status = wp.status();
    assert_eq!(status.threads, ["watchpost"]);
    assert_eq!(status.sinks.len(), 1);
    assert!(status.sinks[0].enabled);
    assert_eq!(status.checks, 1);
    assert_eq!(status.check_interval, Some(Duration::from_secs(10)));
    assert!(status.last_check_run.is_some());
    assert!(!status.panic_hook);
    assert_eq!(
        status.to_string(),
        "watchpost is running: thread watchpost; alerts to memory; 1 health check(s) every 10s \
         (last run 3s ago); panic hook NOT installed"
    );
}

#[test]
fn a_bad_health_configuration_is_a_clear_error() {
    let err = Watchpost::builder()
        .readiness("db", fn_check(|| async { true }))
        .readiness("db", fn_check(|| async { true }))
        .panic_hook(false)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid health checks: check \"db\" is registered twice"
    );
}

#[test]
fn trusted_proxies_come_from_the_environment() {
    let wp = watchpost::WatchpostBuilder::from_lookup(|name| {
        (name == "WATCHPOST_TRUSTED_PROXIES").then(|| "192.0.2.0/24".into())
    })
    .unwrap()
    .sink(MemorySink::new())
    .panic_hook(false)
    .build()
    .unwrap();
    let limiter = wp.rate_limiter("10/min".parse().unwrap());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let from = |peer: &str| {
        limiter
            .check_request(&RateLimitRequest::new(
                "GET",
                "/",
                Some(peer.parse().unwrap()),
                &headers,
            ))
            .client_ip()
    };
    assert_eq!(from("192.0.2.1"), Some("203.0.113.9".parse().unwrap()));
    // Loopback is no longer trusted: a forged header from it is ignored.
    assert_eq!(from("127.0.0.1"), Some("127.0.0.1".parse().unwrap()));
}
