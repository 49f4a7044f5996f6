//! Heartbeats over virtual time: a missed deadline fires one incident and
//! the next beat resolves it, overdue runs and failures (reported, from a
//! dropped guard, from a panic) go down at once, the health check follows,
//! and a dropped heartbeat sends nothing.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use watchpost::alert::{Alerter, MemorySink, Notification, NotificationKind, Severity};
use watchpost::health::{HealthChecks, Probe, Status};
use watchpost::monitor::{Heartbeat, HeartbeatBuilder, HeartbeatState, ManualClock};

/// Generous: only catches a hang.
const WAIT: Duration = Duration::from_secs(5);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

struct Harness {
    manual: ManualClock,
    alerter: Alerter,
    sink: MemorySink,
}

impl Harness {
    fn new() -> Self {
        let manual = ManualClock::new();
        let sink = MemorySink::new();
        let alerter = Alerter::builder()
            .service("test")
            .sink(sink.clone())
            .clock(manual.clock())
            .build()
            .unwrap();
        Self {
            manual,
            alerter,
            sink,
        }
    }

    /// "job": a success expected every 10 minutes, 1 minute of grace.
    fn builder(&self) -> HeartbeatBuilder {
        Heartbeat::builder("job", 10 * MIN)
            .grace(MIN)
            .alerter(&self.alerter)
            .clock(self.manual.clock())
    }

    fn heartbeat(&self) -> Heartbeat {
        self.builder().build().unwrap()
    }

    /// Everything delivered so far, once the queue is empty.
    fn sent(&self) -> Vec<Notification> {
        assert!(self.alerter.flush(WAIT));
        self.sink.notifications()
    }

    fn kinds(&self) -> Vec<NotificationKind> {
        self.sent().iter().map(Notification::kind).collect()
    }
}

fn detail(n: &Notification) -> &str {
    n.alert().detail_text().unwrap_or_default()
}

#[test]
fn a_heartbeat_never_beaten_fires_once_after_period_and_grace() {
    let h = Harness::new();
    let hb = h.heartbeat();

    h.manual.advance(11 * MIN - SEC);
    assert!(h.sent().is_empty(), "fired before period + grace");
    assert_eq!(hb.state(), HeartbeatState::Late);

    h.manual.advance(SEC);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    let firing = &sent[0];
    assert_eq!(firing.kind(), NotificationKind::Firing);
    assert_eq!(firing.key(), "heartbeat:job");
    assert_eq!(firing.alert().title(), "Heartbeat job missed");
    assert_eq!(firing.alert().severity(), Severity::Error);
    assert!(
        detail(firing).starts_with("no success since startup 11m ago ("),
        "{}",
        detail(firing)
    );
    assert!(
        detail(firing).ends_with(" UTC), expected every 10m (+1m grace)"),
        "{}",
        detail(firing)
    );
    assert_eq!(
        firing.alert().labels().collect::<Vec<_>>(),
        [("heartbeat", "job")]
    );
    assert!(h.alerter.is_firing("heartbeat:job"));
    assert!(hb.is_down());

    h.manual.advance(3 * 3600 * SEC);
    assert_eq!(h.sent().len(), 1, "staying down sends nothing more");
}

#[test]
fn the_next_beat_resolves_once() {
    let h = Harness::new();
    let hb = h.heartbeat();
    hb.beat();
    h.manual.advance(9 * MIN);
    hb.beat();
    h.manual.advance(9 * MIN);
    assert!(h.sent().is_empty(), "beating in time sends nothing");

    h.manual.advance(3 * MIN);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(
        detail(&sent[0]).starts_with("last success 11m ago ("),
        "{}",
        detail(&sent[0])
    );

    hb.beat();
    assert_eq!(hb.state(), HeartbeatState::Up);
    let kinds = h.kinds();
    assert_eq!(kinds.len(), 2);
    assert!(matches!(kinds[1], NotificationKind::Resolved { .. }));
    assert!(!h.alerter.is_firing("heartbeat:job"));

    hb.beat();
    h.manual.advance(5 * MIN);
    assert_eq!(h.sent().len(), 2, "beats while up send nothing");
}

#[test]
fn a_start_without_an_end_within_the_grace_is_down() {
    let h = Harness::new();
    let hb = h.heartbeat();
    hb.beat();
    hb.start();
    assert_eq!(hb.state(), HeartbeatState::Started);

    h.manual.advance(MIN - SEC);
    assert!(h.sent().is_empty());
    assert_eq!(hb.state(), HeartbeatState::Started);

    h.manual.advance(SEC);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alert().title(), "Heartbeat job stuck");
    assert!(
        detail(&sent[0]).starts_with("run started 1m ago ("),
        "{}",
        detail(&sent[0])
    );
    assert!(hb.is_down());

    // The run finally ends well: resolved.
    hb.beat();
    assert_eq!(h.kinds().len(), 2);
}

#[test]
fn max_run_time_lets_a_long_run_finish() {
    let h = Harness::new();
    let hb = h.builder().max_run_time(30 * MIN).build().unwrap();
    hb.beat();
    h.manual.advance(10 * MIN);
    let run = hb.run();
    h.manual.advance(29 * MIN); // past the regular deadline, within the run time
    assert_eq!(hb.state(), HeartbeatState::Started);
    run.success();
    assert_eq!(hb.state(), HeartbeatState::Up);
    assert!(h.sent().is_empty());
}

#[test]
fn a_successful_run_is_a_beat() {
    let h = Harness::new();
    let hb = h.heartbeat();
    h.manual.advance(5 * MIN);
    let run = hb.run();
    h.manual.advance(30 * SEC);
    run.success();
    assert_eq!(hb.state(), HeartbeatState::Up);
    assert!(hb.last_success().is_some());
    h.manual.advance(10 * MIN);
    assert!(h.sent().is_empty());
}

#[test]
fn fail_fires_at_once_with_the_reason() {
    let h = Harness::new();
    let hb = h.heartbeat();
    hb.beat();
    hb.fail("disk full: /var/backups");

    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind(), NotificationKind::Firing);
    assert_eq!(sent[0].alert().title(), "Heartbeat job failed");
    assert!(
        detail(&sent[0]).starts_with("disk full: /var/backups\nlast success 0ms ago ("),
        "{}",
        detail(&sent[0])
    );
    assert!(hb.is_down());

    hb.fail("again");
    h.manual.advance(30 * MIN);
    assert_eq!(h.sent().len(), 1, "one incident");

    hb.beat();
    let kinds = h.kinds();
    assert_eq!(kinds.len(), 2);
    assert!(matches!(kinds[1], NotificationKind::Resolved { .. }));
}

#[test]
fn a_run_ended_with_fail_reports_its_error() {
    let h = Harness::new();
    let hb = h.heartbeat();
    let run = hb.run();
    let error = std::io::Error::other("connection reset by peer");
    run.fail(&error);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(detail(&sent[0]).starts_with("connection reset by peer\n"));
}

#[test]
fn a_guard_dropped_without_success_is_a_failure() {
    let h = Harness::new();
    let hb = h.heartbeat();
    hb.beat();
    {
        let _run = hb.run();
        // an early return, a `?`...
    }
    assert!(hb.is_down());
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alert().title(), "Heartbeat job failed");
    assert!(
        detail(&sent[0]).starts_with("run dropped without success\n"),
        "{}",
        detail(&sent[0])
    );
}

#[test]
fn a_guard_dropped_by_a_panic_says_so() {
    let h = Harness::new();
    let hb = h.heartbeat();
    hb.beat();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _run = hb.run();
        panic!("job blew up");
    }));
    assert!(result.is_err());
    assert!(hb.is_down());
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(
        detail(&sent[0]).starts_with("run panicked"),
        "{}",
        detail(&sent[0])
    );
}

#[test]
fn severity_is_configurable() {
    let h = Harness::new();
    let hb = h.builder().severity(Severity::Critical).build().unwrap();
    hb.fail("boom");
    assert_eq!(h.sent()[0].alert().severity(), Severity::Critical);
}

#[test]
fn a_dropped_heartbeat_stops_and_sends_nothing() {
    let h = Harness::new();
    let hb = h.heartbeat();
    let check = hb.check();
    drop(hb);
    drop(check);
    h.manual.advance(3 * 3600 * SEC);
    assert!(h.sent().is_empty());
}

#[test]
fn a_heartbeat_without_an_alerter_still_goes_down() {
    let manual = ManualClock::new();
    let hb = Heartbeat::builder("job", 10 * MIN)
        .grace(MIN)
        .clock(manual.clock())
        .build()
        .unwrap();
    manual.advance(11 * MIN);
    assert!(hb.is_down());
    hb.beat();
    assert!(!hb.is_down());
}

#[tokio::test]
async fn the_health_check_fails_while_down_and_says_why() {
    let h = Harness::new();
    let hb = h.heartbeat();
    let health = HealthChecks::builder()
        .liveness("job", hb.check())
        .cache_for(Duration::ZERO)
        .build()
        .unwrap();

    let report = health.evaluate(Probe::Liveness).await;
    assert_eq!(report.http_status(), 200, "new, within the first deadline");
    assert_eq!(report.check("job").unwrap().observed_value(), None);

    hb.beat();
    h.manual.advance(2 * 3600 * SEC + 3 * MIN);
    let report = health.evaluate(Probe::Liveness).await;
    assert_eq!(report.http_status(), 503);
    let job = report.check("job").unwrap();
    assert_eq!(job.status(), Status::Fail);
    assert_eq!(
        job.output(),
        Some("missed: last success 2h 3m ago, expected every 10m (+1m grace)")
    );
    assert_eq!(job.observed_value(), Some(&serde_json::json!(7380)));
    assert_eq!(job.observed_unit(), Some("s"));

    hb.fail("disk full");
    let report = health.evaluate(Probe::Liveness).await;
    assert_eq!(
        report.check("job").unwrap().output(),
        Some("failed: disk full")
    );

    hb.beat();
    let report = health.evaluate(Probe::Liveness).await;
    assert_eq!(report.http_status(), 200);
    assert_eq!(report.check("job").unwrap().status(), Status::Pass);
}

#[test]
fn zero_period_is_an_error() {
    let h = Harness::new();
    let err = Heartbeat::builder("job", Duration::ZERO)
        .alerter(&h.alerter)
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid period: must be greater than zero");
}
