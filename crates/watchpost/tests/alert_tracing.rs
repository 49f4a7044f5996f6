//! `AlertLayer`: tracing events in, deduplicated alerts out.
#![cfg(all(feature = "tracing-layer", feature = "test-util"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tracing::{Dispatch, Level};
use tracing_subscriber::prelude::*;
use watchpost::alert::{
    Alert, AlertLayer, Alerter, DeliverFuture, MemorySink, Notification, Severity, Sink,
};

const WAIT: Duration = Duration::from_secs(5);

fn alerter() -> (Alerter, MemorySink) {
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .service("test")
        .sink(sink.clone())
        .build()
        .unwrap();
    (alerter, sink)
}

/// Runs `f` with a subscriber made of `layer` only, then waits for the
/// alerts to be delivered.
fn with_layer(alerter: &Alerter, layer: AlertLayer, f: impl FnOnce()) {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f);
    assert!(alerter.flush(WAIT), "alerts not delivered in time");
}

fn detail(n: &Notification) -> &str {
    n.alert().detail_text().unwrap_or_default()
}

#[test]
fn an_error_event_becomes_one_alert() {
    let (alerter, sink) = alerter();
    let mut line = 0;
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        line = line!() + 1; // the event's line
        tracing::error!(
            target: "my_app::billing",
            invoice = 1042,
            customer = "acme",
            "charge failed: card declined"
        );
    });

    let sent = sink.notifications();
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.alert().title(), "charge failed: card declined");
    assert_eq!(n.alert().severity(), Severity::Error);
    let location = format!("{}:{line}", file!());
    assert_eq!(
        detail(n),
        format!("invoice = 1042\ncustomer = acme\ntarget = my_app::billing\nlocation = {location}")
    );
    assert_eq!(n.key(), format!("tracing:my_app::billing:{location}"));
}

#[test]
fn one_callsite_sends_once_and_counts_the_rest() {
    let (alerter, sink) = alerter();
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        for attempt in 0..100 {
            // A different message each time: the callsite is the key.
            tracing::error!(attempt, "payment {attempt} failed");
        }
    });
    assert_eq!(sink.len(), 1);
    assert_eq!(sink.notifications()[0].alert().title(), "payment 0 failed");
    assert_eq!(alerter.stats().suppressed, 99);
}

#[test]
fn a_duplicate_event_is_not_formatted() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static FORMATTED: AtomicUsize = AtomicUsize::new(0);
    struct Costly;
    impl std::fmt::Debug for Costly {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            FORMATTED.fetch_add(1, Ordering::Relaxed);
            f.write_str("costly")
        }
    }
    let (alerter, sink) = alerter();
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        for _ in 0..50 {
            tracing::error!(state = ?Costly, "retry failed");
        }
    });
    assert_eq!(sink.len(), 1);
    assert!(detail(&sink.notifications()[0]).contains("state = costly"));
    // The first event's fields are formatted for its alert; the 49
    // duplicates are counted by their callsite alone.
    assert_eq!(FORMATTED.load(Ordering::Relaxed), 1);
    assert_eq!(alerter.stats().suppressed, 49);
}

#[test]
fn two_callsites_send_two_alerts() {
    let (alerter, sink) = alerter();
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        for _ in 0..10 {
            tracing::error!("database unreachable");
            tracing::error!("database unreachable");
        }
    });
    assert_eq!(sink.len(), 2);
    let keys: Vec<String> = sink
        .notifications()
        .iter()
        .map(|n| n.key().to_owned())
        .collect();
    assert_ne!(keys[0], keys[1]);
    assert_eq!(alerter.stats().suppressed, 18);
}

#[test]
fn warnings_are_ignored_by_default() {
    let (alerter, sink) = alerter();
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        tracing::warn!("disk 85% full");
        tracing::info!("started");
    });
    assert!(sink.is_empty());
}

#[test]
fn min_level_warn_takes_warnings() {
    let (alerter, sink) = alerter();
    let layer = AlertLayer::new(alerter.clone()).min_level(Level::WARN);
    with_layer(&alerter, layer, || {
        tracing::warn!("disk 85% full");
        tracing::info!("started");
        tracing::debug!("details");
    });
    let sent = sink.notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alert().title(), "disk 85% full");
    assert_eq!(sent[0].alert().severity(), Severity::Warning);
}

#[test]
fn severity_is_configurable() {
    let (alerter, sink) = alerter();
    let layer = AlertLayer::new(alerter.clone()).severity(Level::ERROR, Severity::Critical);
    with_layer(&alerter, layer, || tracing::error!("ledger out of balance"));
    assert_eq!(
        sink.notifications()[0].alert().severity(),
        Severity::Critical
    );
}

#[test]
fn targets_restrict_by_prefix() {
    let (alerter, sink) = alerter();
    let layer = AlertLayer::new(alerter.clone()).targets(["my_app", "sqlx"]);
    with_layer(&alerter, layer, || {
        tracing::error!(target: "my_app", "a");
        tracing::error!(target: "my_app::db", "b");
        tracing::error!(target: "sqlx::query", "c");
        tracing::error!(target: "hyper::proto", "d");
        tracing::error!(target: "other", "e");
    });
    let mut titles: Vec<String> = sink
        .notifications()
        .iter()
        .map(|n| n.alert().title().to_owned())
        .collect();
    titles.sort();
    assert_eq!(titles, ["a", "b", "c"]);
}

#[test]
fn excluded_targets_are_skipped() {
    let (alerter, sink) = alerter();
    let layer = AlertLayer::new(alerter.clone())
        .targets(["my_app"])
        .exclude_targets(["my_app::noisy"]);
    with_layer(&alerter, layer, || {
        tracing::error!(target: "my_app::noisy::retry", "a");
        tracing::error!(target: "my_app::db", "b");
    });
    let sent = sink.notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alert().title(), "b");
}

#[test]
fn watchpost_alert_targets_are_ignored() {
    let (alerter, sink) = alerter();
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        tracing::error!(target: "watchpost::alert::delivery", sink = "telegram", "delivery failed");
        tracing::error!(target: "watchpost::alert", "🔴 an alert, logged by the log sink");
    });
    assert!(sink.is_empty());
}

/// A sink that logs an error on the delivery thread each time it delivers.
#[derive(Debug)]
struct LoggingSink {
    dispatch: Dispatch,
}

impl Sink for LoggingSink {
    fn name(&self) -> &str {
        "logging"
    }

    fn deliver<'a>(&'a self, _: &'a Notification) -> DeliverFuture<'a> {
        tracing::dispatcher::with_default(&self.dispatch, || {
            tracing::error!(target: "my_sink", "sink failed");
        });
        Box::pin(async { Ok(()) })
    }
}

#[test]
fn events_on_the_delivery_thread_are_ignored() {
    let (watched, sink) = alerter();
    let dispatch =
        Dispatch::new(tracing_subscriber::registry().with(AlertLayer::new(watched.clone())));
    let other = Alerter::builder()
        .sink(LoggingSink {
            dispatch: dispatch.clone(),
        })
        .build()
        .unwrap();

    other.send(Alert::error("something"));
    assert!(other.flush(WAIT));
    assert!(watched.flush(WAIT));
    assert!(sink.is_empty(), "an event on the delivery thread alerted");

    // The same event off the delivery thread does alert.
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::error!(target: "my_sink", "sink failed");
    });
    assert!(watched.flush(WAIT));
    assert_eq!(sink.len(), 1);
}

#[test]
fn multi_line_messages_keep_the_first_line_as_title() {
    let (alerter, sink) = alerter();
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        tracing::error!("migration failed\nstep 3: column exists");
    });
    let n = &sink.notifications()[0];
    assert_eq!(n.alert().title(), "migration failed");
    assert!(detail(n).starts_with("migration failed\nstep 3: column exists\n"));
}

#[test]
fn long_titles_are_cut() {
    let (alerter, sink) = alerter();
    let long = "x".repeat(500);
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        tracing::error!("{long}");
    });
    let n = &sink.notifications()[0];
    assert_eq!(n.alert().title().chars().count(), 201);
    assert!(n.alert().title().ends_with('…'));
    assert!(detail(n).starts_with(&long));
}

#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("query failed")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn error_fields_show_their_causes() {
    let (alerter, sink) = alerter();
    let error = Outer(std::io::Error::other("connection refused"));
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        tracing::error!(error = &error as &dyn std::error::Error, "checkout failed");
    });
    let n = &sink.notifications()[0];
    assert!(
        detail(n).starts_with("error = query failed: connection refused\n"),
        "{}",
        detail(n)
    );
}

#[test]
fn an_event_without_a_message_is_titled_by_its_first_field() {
    let (alerter, sink) = alerter();
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        tracing::error!(target: "my_app::jobs", error = "queue unreachable");
    });
    assert_eq!(
        sink.notifications()[0].alert().title(),
        "my_app::jobs: error = queue unreachable"
    );
}

#[derive(Debug)]
struct Explodes;

impl std::fmt::Display for Explodes {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Display panicked")
    }
}

#[test]
fn a_panicking_field_is_skipped_not_propagated() {
    let (alerter, sink) = alerter();
    with_layer(&alerter, AlertLayer::new(alerter.clone()), || {
        tracing::error!(value = %Explodes, "first");
        tracing::error!("second");
    });
    let sent = sink.notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alert().title(), "second");
}
