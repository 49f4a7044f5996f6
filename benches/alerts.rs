//! Alert benchmarks: what `Alerter::send` costs the caller's thread.
//!
//! - `send/new_key/*`: a key never seen before, every time (the alert is
//!   queued for the delivery thread). Target < 1 µs. Keys come from a
//!   counter, either as an explicit key or as a title whose fingerprint
//!   differs (letters, not digits: digits are normalised away).
//! - `send/suppressed/*`: a key already delivered in the window (the alert
//!   is counted, for dedupe and for the looping detector, and dropped).
//!   Target < 200 ns. With an explicit key, and with a title that is
//!   fingerprinted on every call.
//! - `send/build_alert_only`: building the `Alert` value, for reference;
//!   the `send/*` benches build their alerts outside the timed loop and
//!   measure `send` alone (including dropping the alert).
//! - `alert_layer/duplicate_event`: an `ERROR` event through the tracing
//!   `AlertLayer` whose callsite was already alerted. Target < 200 ns.
//! - `1M_sends_of_one_key/*`: a million sends of one key on a fresh
//!   alerter, alert construction included, as a hot error loop would do
//!   it. Each iteration checks that exactly two messages were delivered:
//!   the alert, and one "looping" incident for a key this hot.
//!
//! Alerts go to a sink that only counts, and (for new keys) through a store
//! that always says "deliver", so the numbers are the caller's side of the
//! queue. Between timed chunks the bench waits for the queue to drain, so
//! nothing is ever dropped (checked after each chunk).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]
#![allow(clippy::expect_used)] // a bench that cannot set up should stop

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use watchpost::alert::{
    Alert, AlertStore, Alerter, Claim, DeliverFuture, Notification, Sink, StoreFuture,
};

/// Sends timed between two waits for the delivery thread.
const CHUNK: u64 = 10_000;
const FLUSH: Duration = Duration::from_secs(30);

/// A sink that counts deliveries.
#[derive(Debug, Clone, Default)]
struct CountingSink(Arc<AtomicU64>);

impl CountingSink {
    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Sink for CountingSink {
    fn name(&self) -> &str {
        "counting"
    }

    fn deliver<'a>(&'a self, _: &'a Notification) -> DeliverFuture<'a> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

/// A store that lets everything through and keeps nothing, so a flood of
/// new keys measures the caller, not the default store's bookkeeping.
#[derive(Debug)]
struct PassStore;

impl AlertStore for PassStore {
    fn claim<'a>(
        &'a self,
        _: &'a str,
        _: SystemTime,
        _: Duration,
        similar: u64,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(async move { Ok(Claim::Deliver { similar }) })
    }

    fn open_incident<'a>(&'a self, _: &'a str, _: SystemTime) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    fn close_incident<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        Box::pin(async { Ok(None) })
    }
}

fn counting_alerter() -> (Alerter, CountingSink) {
    let sink = CountingSink::default();
    let alerter = Alerter::builder()
        .sink(sink.clone())
        .store(Arc::new(PassStore))
        .dedupe_window(Duration::from_secs(24 * 3600))
        .queue_capacity(4 * CHUNK as usize)
        .build()
        .expect("valid configuration");
    (alerter, sink)
}

/// A title whose fingerprint is unique to `n`: its digits spelled as
/// letters.
fn unique_title(n: u64) -> String {
    let letters: String = n
        .to_string()
        .bytes()
        .map(|d| char::from(b'a' + (d - b'0')))
        .collect();
    format!("upstream {letters} unreachable")
}

/// Times `send` over `iters` alerts made by `make` (outside the timing),
/// `CHUNK` at a time, draining the queue between chunks.
fn time_sends(alerter: &Alerter, iters: u64, mut make: impl FnMut() -> Alert) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        left -= n;
        let alerts: Vec<Alert> = (0..n).map(|_| make()).collect();
        let start = Instant::now();
        for alert in alerts {
            alerter.send(alert);
        }
        total += start.elapsed();
        assert!(alerter.flush(FLUSH), "the delivery thread fell behind");
    }
    assert_eq!(alerter.stats().dropped, 0, "the queue dropped alerts");
    total
}

fn send(c: &mut Criterion) {
    let mut group = c.benchmark_group("send");

    let (alerter, sink) = counting_alerter();
    let mut next = 0u64;
    group.bench_function(BenchmarkId::new("new_key", "explicit"), |b| {
        b.iter_custom(|iters| {
            let took = time_sends(&alerter, iters, || {
                next += 1;
                Alert::error("upstream unreachable").key(format!("upstream-{next}"))
            });
            assert_eq!(sink.count(), next, "every new key is delivered");
            took
        })
    });

    let (alerter, sink) = counting_alerter();
    let mut next = 0u64;
    group.bench_function(BenchmarkId::new("new_key", "fingerprint"), |b| {
        b.iter_custom(|iters| {
            let took = time_sends(&alerter, iters, || {
                next += 1;
                Alert::error(unique_title(next))
            });
            assert_eq!(sink.count(), next, "every new title is delivered");
            took
        })
    });

    for (name, make) in [
        (
            "explicit",
            (|| Alert::error("payment provider unreachable").key("payments")) as fn() -> Alert,
        ),
        ("fingerprint", || {
            Alert::error("timeout after 1012 ms on db-primary (pool 3/10)")
        }),
    ] {
        let (alerter, sink) = counting_alerter();
        let mut sent = 0u64;
        group.bench_function(BenchmarkId::new("suppressed", name), |b| {
            b.iter_custom(|iters| {
                let took = time_sends(&alerter, iters, make);
                sent += iters;
                // The alert once, and once more than 100 were sent the
                // "looping" incident (a key this hot is a retry loop); the
                // rest suppressed.
                let expected = if sent > 100 { 2 } else { 1 };
                assert_eq!(
                    sink.count(),
                    expected,
                    "one delivery (and one looping incident)"
                );
                took
            })
        });
    }

    group.bench_function("build_alert_only", |b| {
        b.iter(|| black_box(Alert::error("payment provider unreachable").key("payments")))
    });
    group.finish();
}

/// An `ERROR` event from one callsite, again and again, through a
/// subscriber holding only the `AlertLayer`: after the first, every event
/// is a duplicate, counted by its callsite before any field is formatted.
/// Target < 200 ns.
fn alert_layer(c: &mut Criterion) {
    use tracing_subscriber::layer::SubscriberExt;

    let mut group = c.benchmark_group("alert_layer");
    let (alerter, sink) = counting_alerter();
    let subscriber =
        tracing_subscriber::registry().with(watchpost::alert::AlertLayer::new(alerter.clone()));
    let error = std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out");
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("duplicate_event", |b| {
            let mut attempt = 0_u64;
            b.iter(|| {
                attempt += 1;
                tracing::error!(attempt, user = "u-1042", error = %error, "payment failed");
            })
        });
    });
    group.finish();
    assert!(alerter.flush(FLUSH));
    // The alert, and the "looping" incident of a callsite this hot.
    assert_eq!(
        sink.count(),
        2,
        "one alert for the callsite (and one looping incident)"
    );
}

fn million(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let mut group = c.benchmark_group("1M_sends_of_one_key");
    group.sample_size(10);
    for (name, keyed) in [("explicit", true), ("fingerprint", false)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let sink = CountingSink::default();
                    let alerter = Alerter::builder()
                        .sink(sink.clone())
                        .build()
                        .expect("valid configuration");
                    let start = Instant::now();
                    for _ in 0..N {
                        let alert = Alert::error("payment provider unreachable after 30 s");
                        alerter.send(if keyed { alert.key("payments") } else { alert });
                    }
                    total += start.elapsed();
                    assert!(alerter.flush(FLUSH));
                    assert_eq!(sink.count(), 2, "the alert and one looping incident");
                    assert_eq!(alerter.stats().suppressed, N - 1);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = send, alert_layer, million
}
criterion_main!(benches);
