//! The Alerter's promises, with in-memory and scripted sinks: `send` never
//! waits on a sink, a full queue drops the oldest, incidents send two
//! messages, shared stores dedupe across alerters, retries follow the
//! error kind, and one broken sink never holds up another.

#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchpost::alert::{
    Alert, Alerter, AlerterBuilder, DeliverFuture, MemorySink, MemoryStore, Notification,
    NotificationKind, Sink, SinkError,
};

/// Generous: only catches a hang.
const HANG: Duration = Duration::from_secs(30);

fn quick() -> AlerterBuilder {
    Alerter::builder()
        .service("test")
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
}

/// A sink that answers from a script, then succeeds; counts attempts.
#[derive(Debug, Default, Clone)]
struct Scripted {
    script: Arc<Mutex<VecDeque<SinkError>>>,
    attempts: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(errors: impl IntoIterator<Item = SinkError>) -> Self {
        Self {
            script: Arc::new(Mutex::new(errors.into_iter().collect())),
            attempts: Arc::default(),
        }
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

impl Sink for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn deliver<'a>(&'a self, _: &'a Notification) -> DeliverFuture<'a> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let next = self.script.lock().unwrap().pop_front();
        Box::pin(async move { next.map_or(Ok(()), Err) })
    }
}

/// A sink that never answers until released.
#[derive(Debug, Clone)]
struct Stuck {
    release: Arc<tokio::sync::Semaphore>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Default for Stuck {
    fn default() -> Self {
        Self {
            release: Arc::new(tokio::sync::Semaphore::new(0)),
            seen: Arc::default(),
        }
    }
}

impl Sink for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(async move {
            let permit = self.release.acquire().await.unwrap();
            permit.forget();
            self.seen.lock().unwrap().push(n.alert().title().to_owned());
            Ok(())
        })
    }
}

/// Panics inside its future, or (`early`) before returning one.
#[derive(Debug)]
struct Panicking {
    early: bool,
}

impl Sink for Panicking {
    fn name(&self) -> &str {
        "panicking"
    }

    fn deliver<'a>(&'a self, _: &'a Notification) -> DeliverFuture<'a> {
        assert!(!self.early, "a bug in a sink, before its future");
        Box::pin(async { panic!("a bug in a sink") })
    }
}

#[test]
fn send_never_waits_on_a_stuck_sink() {
    let stuck = Stuck::default();
    let alerter = quick()
        .sink(stuck.clone())
        .attempt_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let start = Instant::now();
    for i in 0..1000 {
        alerter.send(Alert::error("boom").key(format!("k{i}")));
    }
    assert!(start.elapsed() < HANG);
    assert!(!alerter.flush(Duration::from_millis(50)), "still stuck");
    stuck.release.add_permits(10_000);
    assert!(alerter.flush(HANG));
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts_it() {
    let stuck = Stuck::default();
    let alerter = quick()
        .sink(stuck.clone())
        .queue_capacity(3)
        .attempt_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..20 {
        alerter.send(Alert::error(format!("alert {i}")).key(format!("k{i}")));
    }
    stuck.release.add_permits(100);
    assert!(alerter.flush(HANG));
    let seen = stuck.seen.lock().unwrap().clone();
    let (summaries, alerts): (Vec<_>, Vec<_>) = seen
        .iter()
        .partition(|t| t.contains("could not be delivered to stuck"));
    let stats = alerter.stats();
    assert_eq!(stats.sent as usize, seen.len());
    assert_eq!(stats.dropped as usize + alerts.len(), 20, "{stats:?}");
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(
        alerts.last().map(|t| t.as_str()),
        Some("alert 19"),
        "the newest is kept"
    );
    // What the sink's own queue dropped is summarized on it once it
    // delivers again (a flush doesn't wait for that message).
    let lane_dropped = alerter.sink_stats()[0].given_up.queue_full;
    if lane_dropped == 0 {
        assert!(summaries.is_empty(), "{seen:?}");
    } else {
        let start = Instant::now();
        while !stuck
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.contains("could not be delivered"))
        {
            assert!(start.elapsed() < HANG, "no summary: {seen:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn an_incident_sends_firing_once_and_resolved_once() {
    let sink = MemorySink::new();
    let alerter = quick().sink(sink.clone()).build().unwrap();
    for _ in 0..5 {
        alerter.fire("queue-depth", Alert::warning("Queue depth 1200"));
    }
    assert!(alerter.is_firing("queue-depth"));
    alerter.resolve("queue-depth");
    alerter.resolve("queue-depth");
    alerter.resolve("never-fired");
    assert!(alerter.flush(HANG));
    let sent = sink.notifications();
    let kinds: Vec<_> = sent.iter().map(Notification::kind).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(kinds[0], NotificationKind::Firing);
    assert!(matches!(kinds[1], NotificationKind::Resolved { .. }));
    assert!(sent[1].headline().contains("RESOLVED: Queue depth 1200"));
    assert!(sent[1].duration_line().unwrap().starts_with("lasted "));
    assert_eq!(alerter.stats().suppressed, 4);

    // A new incident with the same key fires again.
    alerter.fire("queue-depth", Alert::warning("Queue depth 1500"));
    assert!(alerter.flush(HANG));
    assert_eq!(sink.len(), 3);
}

#[test]
fn alerters_sharing_a_store_send_once() {
    let store = Arc::new(MemoryStore::new());
    let (sink_a, sink_b) = (MemorySink::new(), MemorySink::new());
    let a = quick()
        .sink(sink_a.clone())
        .store(store.clone())
        .build()
        .unwrap();
    let b = quick().sink(sink_b.clone()).store(store).build().unwrap();

    a.send(Alert::error("payment provider down"));
    assert!(a.flush(HANG));
    b.send(Alert::error("payment provider down"));
    assert!(b.flush(HANG));
    assert_eq!(sink_a.len() + sink_b.len(), 1);
    assert_eq!(b.stats().suppressed, 1, "counted by the store");

    a.fire("db", Alert::critical("db down"));
    assert!(a.flush(HANG));
    b.fire("db", Alert::critical("db down"));
    assert!(b.flush(HANG));
    a.resolve("db");
    assert!(a.flush(HANG));
    b.resolve("db");
    assert!(b.flush(HANG));
    assert_eq!(
        sink_a.len() + sink_b.len(),
        3,
        "one alert, one firing, one resolved"
    );
}

#[test]
fn transient_errors_are_retried_up_to_max_attempts() {
    let sink = Scripted::new([SinkError::transient("502"), SinkError::transient("502")]);
    let alerter = quick().sink(sink.clone()).max_attempts(3).build().unwrap();
    alerter.send(Alert::error("x"));
    assert!(alerter.flush(HANG));
    assert_eq!(sink.attempts(), 3);
    assert_eq!((alerter.stats().sent, alerter.stats().failed), (1, 0));

    let sink = Scripted::new((0..10).map(|_| SinkError::transient("timeout")));
    let alerter = quick().sink(sink.clone()).max_attempts(3).build().unwrap();
    alerter.send(Alert::error("x"));
    assert!(alerter.flush(HANG));
    assert_eq!(sink.attempts(), 3);
    assert_eq!((alerter.stats().sent, alerter.stats().failed), (0, 1));
}

#[test]
fn rate_limits_do_not_use_up_the_retry_budget() {
    let wait = Duration::from_millis(5);
    let sink = Scripted::new((0..6).map(|_| SinkError::rate_limited(wait, "429")));
    let alerter = quick().sink(sink.clone()).max_attempts(2).build().unwrap();
    alerter.send(Alert::error("x"));
    assert!(alerter.flush(HANG));
    assert_eq!(sink.attempts(), 7);
    assert_eq!(alerter.stats().sent, 1);
}

#[test]
fn rejected_is_not_retried_and_disabled_stops_the_sink() {
    let sink = Scripted::new([SinkError::rejected("400 chat not found")]);
    let alerter = quick().sink(sink.clone()).build().unwrap();
    alerter.send(Alert::error("a"));
    assert!(alerter.flush(HANG));
    assert_eq!((sink.attempts(), alerter.stats().failed), (1, 1));

    let sink = Scripted::new([SinkError::disabled("401 wrong token")]);
    let alerter = quick().sink(sink.clone()).build().unwrap();
    alerter.send(Alert::error("a"));
    alerter.send(Alert::error("b"));
    alerter.send(Alert::error("c"));
    assert!(alerter.flush(HANG));
    assert_eq!(sink.attempts(), 1, "a disabled sink is never called again");
    assert_eq!(alerter.stats().failed, 3);
}

#[test]
fn a_broken_sink_never_holds_up_another() {
    let stuck = Stuck::default();
    let memory = MemorySink::new();
    let alerter = quick()
        .sink(stuck.clone())
        .sink(Panicking { early: false })
        .sink(Panicking { early: true })
        .sink(memory.clone())
        .attempt_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..3 {
        alerter.send(Alert::error(format!("alert {i}")).key(format!("k{i}")));
    }
    assert!(memory.wait_for(3, HANG), "the healthy sink got everything");
    stuck.release.add_permits(100);
    assert!(alerter.flush(HANG));
    let sinks = alerter.sink_stats();
    // Three alerts each, and the note about the other broken sink.
    assert!(sinks[1].given_up.rejected >= 3, "{sinks:?}");
    assert!(sinks[2].given_up.rejected >= 3, "{sinks:?}");
    // The healthy sinks got every alert, and hear that the broken ones
    // lost theirs.
    for i in [0, 3] {
        assert!(sinks[i].sent >= 4, "{sinks:?}");
    }
    let notes = memory.notifications();
    assert!(
        notes.iter().any(|n| n
            .alert()
            .title()
            .contains("could not be delivered to panicking")),
        "{notes:?}"
    );
}

#[test]
fn an_alert_sent_after_the_window_carries_the_count() {
    let manual = watchpost::ManualClock::new();
    let sink = MemorySink::new();
    let alerter = quick()
        .sink(sink.clone())
        .dedupe_window(Duration::from_secs(1))
        .clock(manual.clock())
        .build()
        .unwrap();
    alerter.send(Alert::error("timeout after 1012 ms"));
    alerter.send(Alert::error("timeout after 987 ms"));
    alerter.send(Alert::error("timeout after 5 ms"));
    manual.advance(Duration::from_millis(1100));
    alerter.send(Alert::error("timeout after 3 ms"));
    assert!(alerter.flush(HANG));
    let sent = sink.notifications();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].similar(), 2);
    assert_eq!(
        sent[1].similar_line().as_deref(),
        Some("(+2 similar in the last 1s)")
    );
}

#[test]
fn invalid_settings_name_the_setting() {
    let err = Alerter::builder()
        .dedupe_window(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.name(), Some("dedupe_window"));
    let err = Alerter::builder().queue_capacity(0).build().unwrap_err();
    assert_eq!(err.name(), Some("queue_capacity"));
    // A sink that would give every alert up at once.
    let err = Alerter::builder()
        .sink(MemorySink::new().with_max_age(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(err.name(), Some("max_age of sink memory"));
}

#[test]
fn no_sink_means_the_log_sink() {
    let alerter = Alerter::builder().build().unwrap();
    assert_eq!(alerter.sink_names().collect::<Vec<_>>(), ["log"]);
    alerter.send(Alert::info("hello"));
    assert!(alerter.flush(HANG));
    assert_eq!(alerter.stats().sent, 1);
}

/// A store whose claims wait until released, counting the claims waiting.
#[derive(Debug, Clone)]
struct SlowStore {
    release: Arc<tokio::sync::Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl watchpost::alert::AlertStore for SlowStore {
    fn claim<'a>(
        &'a self,
        _key: &'a str,
        _at: std::time::SystemTime,
        _window: Duration,
        similar: u64,
    ) -> watchpost::alert::StoreFuture<'a, watchpost::alert::Claim> {
        Box::pin(async move {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let permit = self.release.acquire().await.unwrap();
            permit.forget();
            Ok(watchpost::alert::Claim::Deliver { similar })
        })
    }

    fn open_incident<'a>(
        &'a self,
        _key: &'a str,
        _at: std::time::SystemTime,
    ) -> watchpost::alert::StoreFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    fn close_incident<'a>(
        &'a self,
        _key: &'a str,
    ) -> watchpost::alert::StoreFuture<'a, Option<std::time::SystemTime>> {
        Box::pin(async { Ok(None) })
    }
}

/// A slow store delays each alert by its own answer, not by the sum of
/// those before it: the claims of different alerts are asked at once.
#[test]
fn store_claims_for_different_alerts_run_concurrently() {
    let store = SlowStore {
        release: Arc::new(tokio::sync::Semaphore::new(0)),
        waiting: Arc::default(),
    };
    let sink = MemorySink::new();
    let alerter = quick()
        .sink(sink.clone())
        .store(Arc::new(store.clone()))
        .build()
        .unwrap();
    for i in 0..10 {
        alerter.send(Alert::error("boom").key(format!("k{i}")));
    }
    let deadline = Instant::now() + HANG;
    while store.waiting.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        store.waiting.load(Ordering::SeqCst),
        10,
        "all ten asked at once"
    );
    assert!(sink.is_empty());
    store.release.add_permits(10);
    assert!(alerter.flush(HANG));
    assert_eq!(sink.len(), 10);
}

#[test]
fn a_disabled_sink_is_reported_on_the_others_once() {
    let broken = Scripted::new([SinkError::disabled("the token was revoked")]);
    let memory = MemorySink::new();
    let alerter = quick()
        .sink(broken.clone())
        .sink(memory.clone())
        .build()
        .unwrap();
    alerter.send(Alert::error("first").key("k0"));
    assert!(alerter.flush(HANG));
    for i in 1..6 {
        alerter.send(Alert::error(format!("alert {i}")).key(format!("k{i}")));
        assert!(alerter.flush(HANG));
    }
    let titles: Vec<String> = memory
        .notifications()
        .iter()
        .map(|n| n.alert().title().to_owned())
        .collect();
    let notes = titles
        .iter()
        .filter(|t| t.contains("could not be delivered to scripted"))
        .count();
    assert_eq!(notes, 1, "{titles:#?}");
    assert_eq!(titles.len(), 7, "six alerts and the note: {titles:#?}");
    assert_eq!(broken.attempts(), 1, "nothing sent once disabled");
    let sinks = alerter.sink_stats();
    assert_eq!(sinks[0].given_up.disabled, 6, "{sinks:?}");
    assert!(!sinks[0].enabled);
}

/// Flushes when dropped, and keeps what the flush said: a `Watchpost`
/// dropped by a panic unwinding out of `main` does this.
struct FlushOnDrop {
    alerter: Alerter,
    flushed: Arc<Mutex<Option<bool>>>,
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let flushed = self.alerter.flush(HANG);
        *self.flushed.lock().unwrap() = Some(flushed);
    }
}

#[test]
fn a_flush_while_unwinding_waits_for_first_attempts_not_retries() {
    // A sink that is down (every attempt refused), probed again only after
    // a long backoff: waiting for a retry would take the whole `HANG`.
    let down = std::iter::repeat_with(|| SinkError::transient("cannot connect: refused"));
    let sink = Scripted::new(down.take(100));
    let alerter = Alerter::builder()
        .service("test")
        .sink(sink.clone())
        .backoff(HANG, HANG)
        .build()
        .unwrap();
    // Two alerts: the second waits behind the first, which fails.
    alerter.send(Alert::error("first").key("a"));
    alerter.send(Alert::error("second").key("b"));
    let flushed = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _flush = FlushOnDrop {
            alerter: alerter.clone(),
            flushed: flushed.clone(),
        };
        std::panic::resume_unwind(Box::new("the process is dying"));
    }));
    assert!(unwound.is_err());
    assert!(started.elapsed() < HANG / 2, "the flush waited out a retry");
    assert_eq!(
        *flushed.lock().unwrap(),
        Some(false),
        "nothing was delivered"
    );
    assert_eq!(sink.attempts(), 1, "one attempt, no retry waited for");
    assert_eq!(alerter.stats().queued, 2, "both stay queued");

    // Outside a panic, a flush waits for the retries (here, in vain).
    assert!(!alerter.flush(Duration::from_millis(50)));
}
