#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::*;
use crate::alert::{MemorySink, NotificationKind};
use crate::monitor::ManualClock;

const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    manual: ManualClock,
    monitor: HttpMonitor,
    alerter: Alerter,
    sink: MemorySink,
}

impl Harness {
    fn new(configure: impl FnOnce(HttpMonitorBuilder) -> HttpMonitorBuilder) -> Self {
        let manual = ManualClock::new();
        let sink = MemorySink::new();
        let alerter = Alerter::builder()
            .sink(sink.clone())
            .clock(manual.clock())
            .build()
            .unwrap();
        let monitor = configure(HttpMonitor::builder(&alerter).clock(manual.clock()))
            .build()
            .unwrap();
        Self {
            manual,
            monitor,
            alerter,
            sink,
        }
    }

    /// `n` requests answered `status` on `route` that took `latency`
    /// each, all at the current virtual time.
    fn requests(&self, n: usize, status: u16, route: &str, latency: Duration) {
        for _ in 0..n {
            self.monitor
                .record_latency(latency, status, "GET", || Some(route));
        }
    }

    /// `ok` 200s and `failed` 500s spread over `secs` seconds, one second
    /// at a time.
    fn traffic(&self, secs: u64, ok: usize, failed: usize) {
        for _ in 0..secs {
            self.requests(ok, 200, "/", Duration::from_millis(5));
            self.requests(failed, 500, "/api/chat", Duration::from_millis(5));
            self.manual.advance(Duration::from_secs(1));
        }
    }

    fn kinds(&self) -> Vec<String> {
        assert!(self.alerter.flush(WAIT));
        self.sink
            .notifications()
            .iter()
            .map(|n| {
                let kind = match n.kind {
                    NotificationKind::Firing => "firing",
                    NotificationKind::Resolved { .. } => "resolved",
                    _ => "alert",
                };
                format!("{kind} {}", n.key)
            })
            .collect()
    }
}

#[test]
fn a_burst_of_5xx_fires_one_incident_with_the_counts_and_routes() {
    let h = Harness::new(|b| b);
    h.requests(60, 200, "/", Duration::from_millis(3));
    h.requests(90, 500, "/error", Duration::from_millis(1));
    h.requests(5, 500, "/api/chat", Duration::from_millis(1));
    h.manual.advance(Duration::from_secs(1));
    // The burst keeps the rate up for the rest of the window: still one.
    h.manual.advance(Duration::from_secs(30));
    assert_eq!(h.kinds(), ["firing http:5xx"]);
    let n = &h.sink.notifications()[0];
    assert_eq!(n.alert.title(), "HTTP 5xx rate 61% (http)");
    let detail = n.alert.detail_text().unwrap();
    assert!(
        detail.starts_with("95 of 155 requests answered 5xx in the last 1m"),
        "{detail}"
    );
    assert!(
        detail.contains("Top routes: GET /error (90), GET /api/chat (5)"),
        "{detail}"
    );
    assert!(h.alerter.is_firing(h.monitor.error_rate_key()));
}

#[test]
fn too_few_requests_never_fire() {
    let h = Harness::new(|b| b);
    h.requests(19, 500, "/error", Duration::from_millis(1));
    h.manual.advance(Duration::from_secs(120));
    assert!(h.kinds().is_empty());
    assert_eq!(h.monitor.snapshot().requests, 0, "the window moved on");
}

#[test]
fn a_rate_under_the_threshold_does_not_fire() {
    let h = Harness::new(|b| b);
    // 4% for ten minutes.
    h.traffic(600, 24, 1);
    assert!(h.kinds().is_empty());
}

#[test]
fn hysteresis_holds_between_the_marks_and_resolves_after_a_full_calm_window() {
    let h = Harness::new(|b| b);
    h.traffic(10, 9, 1); // 10%: fires
    assert_eq!(h.kinds(), ["firing http:5xx"]);
    // 3%: under the 5% threshold but above the 2.5% resolve mark, for
    // five minutes: still firing, nothing sent.
    h.traffic(300, 97, 3);
    assert_eq!(h.kinds(), ["firing http:5xx"]);
    // Healthy traffic: the window's rate falls under 2.5% within a window,
    // and must stay there a full window more before it resolves.
    h.traffic(60, 100, 0);
    assert_eq!(
        h.kinds(),
        ["firing http:5xx"],
        "calm for less than a window"
    );
    h.traffic(60, 100, 0);
    assert_eq!(h.kinds(), ["firing http:5xx", "resolved http:5xx"]);
    // A relapse is a new incident.
    h.traffic(10, 0, 100);
    assert_eq!(
        h.kinds(),
        ["firing http:5xx", "resolved http:5xx", "firing http:5xx"]
    );
}

#[test]
fn a_relapse_during_the_calm_window_restarts_it() {
    let h = Harness::new(|b| b);
    h.traffic(5, 10, 10); // 50%: fires
    h.traffic(30, 100, 0); // under 2.5% from about 24 s
    h.traffic(3, 0, 30); // relapse at 35 s: calm starts over
                         // Calm again from about 58 s (the first errors leave the window at
                         // 60 s). Without the relapse this would have resolved at about 84 s.
    h.traffic(50, 100, 0);
    assert_eq!(h.kinds(), ["firing http:5xx"]);
    h.traffic(40, 100, 0);
    assert_eq!(h.kinds(), ["firing http:5xx", "resolved http:5xx"]);
}

#[test]
fn no_traffic_at_all_resolves_after_a_window() {
    let h = Harness::new(|b| b);
    h.requests(30, 500, "/x", Duration::from_millis(1));
    h.manual.advance(Duration::from_secs(1));
    assert_eq!(h.kinds(), ["firing http:5xx"]);
    h.manual.advance(Duration::from_secs(125));
    assert_eq!(h.kinds(), ["firing http:5xx", "resolved http:5xx"]);
}

#[test]
fn the_latency_budget_fires_and_resolves() {
    let h = Harness::new(|b| b.latency_budget(Duration::from_millis(500)));
    // 10% of requests at 2 s: p95 is 2 s.
    for _ in 0..30 {
        h.requests(9, 200, "/", Duration::from_millis(100));
        h.requests(1, 200, "/slow", Duration::from_secs(2));
        h.manual.advance(Duration::from_secs(1));
    }
    assert_eq!(h.kinds(), ["firing http:latency"]);
    let title = h.sink.notifications()[0].alert.title().to_owned();
    assert!(title.starts_with("HTTP p95 latency 2."), "{title}");
    assert!(title.contains("budget 500ms"), "{title}");
    h.traffic(130, 10, 0);
    assert_eq!(h.kinds(), ["firing http:latency", "resolved http:latency"]);
}

#[test]
fn latency_doubling_against_the_previous_hour_fires() {
    let h = Harness::new(|b| b.latency_degradation(2.0));
    // An hour at 50 ms.
    for _ in 0..3600 {
        h.requests(1, 200, "/", Duration::from_millis(50));
        h.manual.advance(Duration::from_secs(1));
    }
    assert!(h.kinds().is_empty());
    // 80 ms: 1.6×, not enough.
    for _ in 0..120 {
        h.requests(1, 200, "/", Duration::from_millis(80));
        h.manual.advance(Duration::from_secs(1));
    }
    assert!(h.kinds().is_empty());
    // After the deploy: 150 ms, 3×.
    for _ in 0..60 {
        h.requests(1, 200, "/", Duration::from_millis(150));
        h.manual.advance(Duration::from_secs(1));
    }
    assert_eq!(h.kinds(), ["firing http:latency"]);
    let title = h.sink.notifications()[0].alert.title().to_owned();
    assert!(title.contains("the previous hour's"), "{title}");
}

#[test]
fn no_baseline_no_degradation_alert() {
    let h = Harness::new(|b| b.latency_degradation(2.0));
    for _ in 0..120 {
        h.requests(1, 200, "/", Duration::from_secs(3));
        h.manual.advance(Duration::from_secs(1));
    }
    assert!(h.kinds().is_empty());
}

#[test]
fn snapshot_reports_the_window() {
    let h = Harness::new(|b| b);
    h.requests(19, 200, "/", Duration::from_millis(10));
    h.requests(1, 503, "/pay/{id}", Duration::from_millis(10));
    let s = h.monitor.snapshot();
    assert_eq!((s.requests, s.errors), (20, 1));
    assert!((s.error_rate - 0.05).abs() < 1e-9);
    assert_eq!(s.top_routes, [("GET /pay/{id}".to_owned(), 1)]);
    assert!(s.p95.unwrap() >= Duration::from_millis(10));
    assert_eq!(s.window, Duration::from_secs(60));
}

#[test]
fn bad_configuration_is_an_error() {
    let alerter = Alerter::builder().build().unwrap();
    for b in [
        HttpMonitor::builder(&alerter).error_rate(0.0),
        HttpMonitor::builder(&alerter).error_rate(1.5),
        HttpMonitor::builder(&alerter).error_rate(f64::NAN),
        HttpMonitor::builder(&alerter).resolve_below(0.2),
        HttpMonitor::builder(&alerter).latency_degradation(0.5),
        HttpMonitor::builder(&alerter).window(Duration::ZERO),
    ] {
        assert!(b.build().is_err());
    }
}

#[test]
fn slow_requests_are_logged_with_method_route_and_duration() {
    let h = Harness::new(|b| b);
    let out = watchpost_testkit::logs::scoped(|| {
        h.requests(1, 200, "/fast", Duration::from_millis(999));
        h.requests(1, 200, "/users/{id}", Duration::from_millis(1500));
    });
    assert_eq!(out.matches("slow request").count(), 1, "{out}");
    assert!(out.contains("WARN"), "{out}");
    assert!(
        out.contains("slow request: GET /users/{id} took 1.50s"),
        "{out}"
    );
    assert!(out.contains("duration_ms=1500"), "{out}");
}
