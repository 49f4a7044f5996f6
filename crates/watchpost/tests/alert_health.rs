//! Health status flips → alert incidents (`HealthChecksBuilder::alert_on_failure`).
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use watchpost::alert::{Alerter, MemorySink, NotificationKind, Severity};
use watchpost::checks::fn_check;
use watchpost::health::{CheckSpec, HealthChecks, HealthChecksBuilder};
use watchpost::ManualClock;

const WAIT: Duration = Duration::from_secs(5);

/// A check that passes while its switch is on, and fails with
/// "connection refused" otherwise.
fn switch(up: &Arc<AtomicBool>) -> impl watchpost::health::Check {
    let up = up.clone();
    fn_check(move || {
        let up = up.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err("connection refused to 10.0.0.5:5432")
            }
        }
    })
}

struct Harness {
    _health: HealthChecks,
    alerter: Alerter,
    sink: MemorySink,
    manual: ManualClock,
}

impl Harness {
    /// `configure` adds the checks; they run in the background every
    /// second of a manual clock, with no probe at all.
    fn new(configure: impl FnOnce(HealthChecksBuilder) -> HealthChecksBuilder) -> Self {
        let sink = MemorySink::new();
        let manual = ManualClock::new();
        let alerter = Alerter::builder()
            .sink(sink.clone())
            .clock(manual.clock())
            .build()
            .unwrap();
        let health = configure(HealthChecks::builder())
            .background(Duration::from_secs(1))
            .alert_on_failure(alerter.clone())
            .build()
            .unwrap();
        assert!(health.runs_in_background());
        // The first run starts with the checks; `probe` counts the next ones.
        manual.tick();
        Self {
            _health: health,
            alerter,
            sink,
            manual,
        }
    }

    /// Lets `n` background runs happen (`n` seconds of virtual time) and
    /// waits for the alerts.
    async fn probe(&self, n: usize) {
        for _ in 0..n {
            self.manual.advance(Duration::from_secs(1));
        }
        assert!(self.alerter.flush(WAIT));
    }

    fn kinds(&self) -> Vec<NotificationKind> {
        self.sink.notifications().iter().map(|n| n.kind()).collect()
    }
}

#[tokio::test]
async fn a_check_going_down_fires_once_and_resolves_once() {
    let up = Arc::new(AtomicBool::new(true));
    let h = Harness::new(|b| b.readiness("postgres", switch(&up)));

    h.probe(3).await;
    assert!(h.sink.is_empty(), "healthy readings send nothing");

    up.store(false, Ordering::SeqCst);
    h.probe(1).await;
    let sent = h.sink.notifications();
    assert_eq!(sent.len(), 1);
    let firing = &sent[0];
    assert_eq!(firing.kind(), NotificationKind::Firing);
    assert_eq!(firing.key(), "health:postgres");
    assert_eq!(firing.alert().severity(), Severity::Critical);
    assert_eq!(firing.alert().title(), "Health check postgres failing");
    let detail = firing.alert().detail_text().unwrap();
    assert!(
        detail.starts_with("connection refused to 10.0.0.5:5432\n"),
        "{detail}"
    );
    assert_eq!(
        firing.alert().labels().collect::<Vec<_>>(),
        [("check", "postgres")]
    );
    assert!(h.alerter.is_firing("health:postgres"));

    h.probe(50).await;
    assert_eq!(h.sink.len(), 1, "staying down sends nothing more");

    up.store(true, Ordering::SeqCst);
    h.probe(1).await;
    let sent = h.sink.notifications();
    assert_eq!(sent.len(), 2);
    assert!(matches!(sent[1].kind(), NotificationKind::Resolved { .. }));
    assert_eq!(sent[1].key(), "health:postgres");
    assert!(sent[1].duration_line().unwrap().starts_with("lasted "));
    assert!(!h.alerter.is_firing("health:postgres"));

    h.probe(5).await;
    assert_eq!(h.sink.len(), 2, "staying up sends nothing more");
}

#[tokio::test]
async fn a_failing_first_reading_fires() {
    let up = Arc::new(AtomicBool::new(false));
    let h = Harness::new(|b| b.readiness("redis", switch(&up)));
    h.probe(1).await;
    assert_eq!(h.kinds(), [NotificationKind::Firing]);
    assert_eq!(h.sink.notifications()[0].key(), "health:redis");
}

#[tokio::test]
async fn fail_after_keeps_one_flaky_probe_quiet() {
    let up = Arc::new(AtomicBool::new(true));
    let h = Harness::new(|b| b.readiness("postgres", switch(&up)).fail_after(3));
    h.probe(1).await;

    // Flaky: never three failures in a row.
    for _ in 0..5 {
        up.store(false, Ordering::SeqCst);
        h.probe(2).await;
        up.store(true, Ordering::SeqCst);
        h.probe(1).await;
    }
    assert!(h.sink.is_empty(), "a flaky check paged someone");

    up.store(false, Ordering::SeqCst);
    h.probe(2).await;
    assert!(h.sink.is_empty());
    h.probe(1).await;
    assert_eq!(h.kinds(), [NotificationKind::Firing]);
}

#[tokio::test]
async fn recover_after_holds_the_incident_open() {
    let up = Arc::new(AtomicBool::new(true));
    let h = Harness::new(|b| b.readiness("postgres", switch(&up)).recover_after(2));
    h.probe(1).await;
    up.store(false, Ordering::SeqCst);
    h.probe(1).await;
    up.store(true, Ordering::SeqCst);
    h.probe(1).await;
    assert_eq!(h.kinds(), [NotificationKind::Firing], "one pass resolved");
    h.probe(1).await;
    assert_eq!(h.sink.len(), 2);
    assert!(matches!(h.kinds()[1], NotificationKind::Resolved { .. }));
}

#[tokio::test]
async fn non_critical_checks_alert_as_warnings() {
    let up = Arc::new(AtomicBool::new(true));
    let h = Harness::new(|b| {
        b.register(
            CheckSpec::new("search", switch(&up))
                .readiness()
                .non_critical(),
        )
    });
    h.probe(1).await;
    up.store(false, Ordering::SeqCst);
    h.probe(3).await;
    let sent = h.sink.notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key(), "health:search");
    assert_eq!(sent[0].alert().severity(), Severity::Warning);
    up.store(true, Ordering::SeqCst);
    h.probe(1).await;
    assert_eq!(h.sink.len(), 2);
}

#[tokio::test]
async fn each_check_is_its_own_incident() {
    let db = Arc::new(AtomicBool::new(true));
    let cache = Arc::new(AtomicBool::new(true));
    let h = Harness::new(|b| {
        b.readiness("postgres", switch(&db))
            .readiness("redis", switch(&cache))
    });
    h.probe(1).await;
    db.store(false, Ordering::SeqCst);
    cache.store(false, Ordering::SeqCst);
    h.probe(3).await;
    db.store(true, Ordering::SeqCst);
    h.probe(1).await;

    let sent = h.sink.notifications();
    let mut firing: Vec<&str> = sent
        .iter()
        .filter(|n| n.kind() == NotificationKind::Firing)
        .map(|n| n.key())
        .collect();
    firing.sort_unstable();
    assert_eq!(firing, ["health:postgres", "health:redis"]);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].key(), "health:postgres");
    assert!(h.alerter.is_firing("health:redis"));
}

#[tokio::test]
async fn liveness_checks_alert_too() {
    let up = Arc::new(AtomicBool::new(true));
    let h = Harness::new(|b| b.liveness("worker-loop", switch(&up)));
    h.probe(1).await;
    up.store(false, Ordering::SeqCst);
    h.probe(1).await;
    assert_eq!(h.kinds(), [NotificationKind::Firing]);
    assert_eq!(h.sink.notifications()[0].key(), "health:worker-loop");
}
