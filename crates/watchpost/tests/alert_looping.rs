//! Looping alerts: the retry-loop detector in the alerter's dedupe, on
//! virtual time.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use watchpost::alert::{Alert, Alerter, AlerterBuilder, MemorySink, NotificationKind};
use watchpost::monitor::ManualClock;

const WAIT: Duration = Duration::from_secs(5);

fn setup(
    configure: impl FnOnce(AlerterBuilder) -> AlerterBuilder,
) -> (ManualClock, Alerter, MemorySink) {
    let manual = ManualClock::new();
    let sink = MemorySink::new();
    let alerter = configure(Alerter::builder().sink(sink.clone()).clock(manual.clock()))
        .build()
        .unwrap();
    (manual, alerter, sink)
}

fn messages(alerter: &Alerter, sink: &MemorySink) -> Vec<String> {
    assert!(alerter.flush(WAIT));
    sink.notifications()
        .iter()
        .map(|n| {
            let kind = match n.kind() {
                NotificationKind::Firing => "firing",
                NotificationKind::Resolved { .. } => "resolved",
                _ => "alert",
            };
            format!("{kind}: {}", n.alert().title())
        })
        .collect()
}

fn llm_failure() -> Alert {
    Alert::error("OpenAI call failed: 429 Too Many Requests")
        .detail("POST /v1/chat/completions")
        .label("job", "summarise")
}

#[test]
fn a_retry_loop_sends_the_alert_once_then_one_looping_incident() {
    let (manual, alerter, sink) = setup(|b| b);
    // 412 failures in two minutes, each deduplicated after the first.
    for _ in 0..412 {
        alerter.send(llm_failure());
        manual.advance(Duration::from_millis(290));
    }
    assert_eq!(
        messages(&alerter, &sink),
        [
            "alert: OpenAI call failed: 429 Too Many Requests",
            "firing: Looping: OpenAI call failed: 429 Too Many Requests",
        ]
    );
    let looping = &sink.notifications()[1];
    let detail = looping.alert().detail_text().unwrap();
    assert!(
        detail.starts_with("Fired 101 times in the last 5m"),
        "{detail}"
    );
    assert!(detail.ends_with("POST /v1/chat/completions"), "{detail}");
    assert_eq!(
        looping.key(),
        format!("looping:{}", llm_failure().dedupe_key())
    );
    assert!(looping.alert().labels().any(|l| l == ("job", "summarise")));
    assert_eq!(alerter.stats().suppressed, 411);

    // The loop stops; 15 quiet minutes later the incident resolves, and
    // not before the pace has dropped.
    manual.advance(Duration::from_secs(10 * 60));
    assert_eq!(messages(&alerter, &sink).len(), 2);
    manual.advance(Duration::from_secs(6 * 60));
    let all = messages(&alerter, &sink);
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        all[2],
        "resolved: Looping: OpenAI call failed: 429 Too Many Requests"
    );
    match sink.notifications()[2].kind() {
        NotificationKind::Resolved { duration } => {
            assert!(duration >= Duration::from_secs(14 * 60), "{duration:?}")
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn an_error_that_recurs_slowly_never_loops() {
    let (manual, alerter, sink) = setup(|b| b);
    // 60 an hour for three hours: one message per dedupe window.
    for _ in 0..180 {
        alerter.send(llm_failure());
        manual.advance(Duration::from_secs(60));
    }
    let all = messages(&alerter, &sink);
    assert!(all.iter().all(|m| m.starts_with("alert: ")), "{all:?}");
    assert_eq!(all.len(), 36);
}

#[test]
fn the_threshold_is_configurable_and_can_be_off() {
    let (manual, alerter, sink) =
        setup(|b: AlerterBuilder| b.looping_threshold(10, Duration::from_secs(600)));
    for _ in 0..10 {
        alerter.send(llm_failure());
        manual.advance(Duration::from_secs(1));
    }
    assert_eq!(messages(&alerter, &sink).len(), 1, "10 is not more than 10");
    alerter.send(llm_failure());
    assert_eq!(messages(&alerter, &sink).len(), 2);

    let (manual, alerter, sink) = setup(AlerterBuilder::disable_looping_alerts);
    for _ in 0..1000 {
        alerter.send(llm_failure());
        manual.advance(Duration::from_millis(100));
    }
    assert_eq!(messages(&alerter, &sink).len(), 1);
}

#[test]
fn zero_looping_settings_are_refused() {
    assert!(Alerter::builder()
        .looping_threshold(0, Duration::from_secs(60))
        .build()
        .is_err());
    assert!(Alerter::builder()
        .looping_threshold(5, Duration::ZERO)
        .build()
        .is_err());
}
