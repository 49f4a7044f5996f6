//! Dedupe through the public API: a hot loop, many threads, fingerprints.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Barrier;
use std::time::{Duration, Instant};

use watchpost::alert::{Alert, Alerter, MemorySink, NotificationKind};

const WAIT: Duration = Duration::from_secs(5);

fn alerter(window: Duration) -> (Alerter, MemorySink) {
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .sink(sink.clone())
        .dedupe_window(window)
        .build()
        .unwrap();
    (alerter, sink)
}

#[test]
fn a_million_sends_of_one_key_deliver_once() {
    const N: u64 = 1_000_000;
    let (alerter, sink) = alerter(Duration::from_secs(300));
    let started = Instant::now();
    for _ in 0..N {
        alerter.send(Alert::error("payment provider unreachable").key("payments"));
    }
    let elapsed = started.elapsed();
    assert!(alerter.flush(WAIT));
    eprintln!(
        "{N} sends in {elapsed:?} ({:?} per send)",
        elapsed / N as u32
    );

    // The alert once, and one "looping" incident: a key this hot is a
    // retry loop.
    let notifications = sink.notifications();
    assert_eq!(notifications.len(), 2);
    assert_eq!(notifications[0].similar(), 0);
    assert_eq!(notifications[1].kind(), NotificationKind::Firing);
    assert_eq!(notifications[1].key(), "looping:payments");
    let stats = alerter.stats();
    assert_eq!(stats.suppressed, N - 1);
    assert_eq!(stats.sent, 2);
    assert_eq!(stats.dropped, 0);
}

#[test]
fn many_threads_sending_one_key_deliver_once() {
    const THREADS: usize = 8;
    const EACH: u64 = 10_000;
    let (alerter, sink) = alerter(Duration::from_secs(300));
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                start.wait();
                for _ in 0..EACH {
                    alerter.send(Alert::error("queue stuck").key("queue"));
                }
            });
        }
    });
    assert!(alerter.flush(WAIT));
    let keys: Vec<String> = sink
        .notifications()
        .iter()
        .map(|n| n.key().to_owned())
        .collect();
    assert_eq!(keys, ["queue", "looping:queue"]);
    assert_eq!(alerter.stats().suppressed, THREADS as u64 * EACH - 1);
}

#[test]
fn titles_that_differ_in_numbers_are_one_alert() {
    let window = Duration::from_millis(200);
    let manual = watchpost::ManualClock::new();
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .sink(sink.clone())
        .dedupe_window(window)
        .clock(manual.clock())
        .build()
        .unwrap();

    alerter.send(Alert::error("timeout after 1012 ms"));
    alerter.send(Alert::error("timeout after 987 ms"));
    alerter.send(Alert::error("timeout after 33 ms"));
    assert!(alerter.flush(WAIT));
    assert_eq!(sink.len(), 1);
    assert_eq!(
        sink.notifications()[0].alert().title(),
        "timeout after 1012 ms"
    );
    assert_eq!(alerter.stats().suppressed, 2);

    // A different title is a different alert.
    alerter.send(Alert::error("refused after 987 ms"));
    assert!(alerter.flush(WAIT));
    assert_eq!(sink.len(), 2);

    // The next window's message says what was suppressed in the last one.
    manual.advance(window + Duration::from_millis(50));
    alerter.send(Alert::error("timeout after 1500 ms"));
    assert!(alerter.flush(WAIT));
    let sent = sink.notifications();
    assert_eq!(sent.len(), 3);
    let next = &sent[2];
    assert_eq!(next.alert().title(), "timeout after 1500 ms");
    assert_eq!(next.similar(), 2);
    assert_eq!(
        next.similar_line().as_deref(),
        Some("(+2 similar in the last 200ms)")
    );
    assert_eq!(next.key(), sent[0].key());
}
