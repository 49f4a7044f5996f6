use super::*;
use crate::alert::model::{Alert, ServiceInfo};
use crate::alert::notification::NotificationKind;
use crate::panic::{PanicReport, StackFrame};
use sentry_types::protocol::v7::{Envelope, Level};
use std::sync::Arc;

const DSN: &str = "https://0123456789abcdef@o42.ingest.sentry.io/4505";
const KEY: &str = "0123456789abcdef";

fn service() -> Arc<ServiceInfo> {
    let mut s = ServiceInfo::new("checkout-api");
    s.environment = Some("production".into());
    s.host = "web-1".into();
    s.version = Some("1.4.2".into());
    Arc::new(s)
}

fn notification(alert: Alert) -> Notification {
    Notification::new(alert, service())
}

#[test]
fn dsn_parts_and_envelope_url() {
    let cases = [
        (DSN, "https://o42.ingest.sentry.io/api/4505/envelope/"),
        (
            "http://k@127.0.0.1:9000/7",
            "http://127.0.0.1:9000/api/7/envelope/",
        ),
        (
            "https://k@sentry.example.com:443/sentry/3",
            "https://sentry.example.com/sentry/api/3/envelope/",
        ),
        (
            "  https://k:legacy@glitchtip.example.com/12\n",
            "https://glitchtip.example.com/api/12/envelope/",
        ),
    ];
    for (dsn, url) in cases {
        let parsed: Dsn = dsn.parse().unwrap();
        assert_eq!(parsed.envelope_url(), url, "{dsn:?}");
    }
    let dsn: Dsn = "http://k@[::1]:9000/sub/path/7".parse().unwrap();
    assert_eq!(dsn.host(), "[::1]");
    assert_eq!(dsn.project_id(), "7");
    assert_eq!(
        dsn.envelope_url(),
        "http://[::1]:9000/sub/path/api/7/envelope/"
    );
    assert_eq!(dsn.to_string(), "http://[redacted]@[::1]:9000/sub/path/7");
}

#[test]
fn auth_header_carries_the_key_and_is_sensitive() {
    let dsn: Dsn = DSN.parse().unwrap();
    assert!(dsn.auth.is_sensitive());
    assert_eq!(
        dsn.auth.to_str().unwrap(),
        format!(
            "Sentry sentry_version=7, sentry_client=watchpost/{}, sentry_key={KEY}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let legacy: Dsn = "https://pub:sec@h.example/1".parse().unwrap();
    assert!(legacy
        .auth
        .to_str()
        .unwrap()
        .ends_with("sentry_key=pub, sentry_secret=sec"));
    assert_eq!(legacy.scrub("a pub b sec c"), "a [redacted] b [redacted] c");
}

#[test]
fn bad_dsns_say_why_without_quoting() {
    for (bad, why) in [
        ("", "not a URL"),
        ("0123456789abcdef", "not a URL"),
        ("ftp://0123456789abcdef@h/1", "http:// or https://"),
        ("https://o42.ingest.sentry.io/4505", "no public key"),
        (
            "https://0123456789abcdef@o42.ingest.sentry.io/",
            "no project id",
        ),
        (
            "https://0123456789abcdef@o42.ingest.sentry.io",
            "no project id",
        ),
        ("https://0123456789abcdef,x@h/1", "the key may only hold"),
    ] {
        let err = bad.parse::<Dsn>().unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(why), "{bad:?}: {shown}");
        assert!(!shown.contains(KEY), "{bad:?}: {shown}");
        let err = SentrySink::from_dsn_str(bad).unwrap_err();
        assert_eq!(err.name(), Some("WATCHPOST_SENTRY_DSN"));
        assert!(!format!("{err} {err:?}").contains(KEY), "{err}");
    }
}

#[test]
fn debug_and_display_never_show_the_key() {
    let dsn: Dsn = "https://0123456789abcdef:s3cr3t-legacy@h.example:8443/1"
        .parse()
        .unwrap();
    let sink = SentrySink::new(dsn.clone());
    for shown in [
        dsn.to_string(),
        format!("{dsn:?}"),
        format!("{sink:?}"),
        format!("{:?}", sink.dsn()),
    ] {
        assert!(!shown.contains(KEY) && !shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("h.example:8443"), "{shown}");
    }
}

#[test]
fn rate_limit_header_uses_the_longest_relevant_wait() {
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(rate_limit("60:error:organization"), secs(60));
    assert_eq!(rate_limit("60::organization"), secs(60));
    assert_eq!(rate_limit("60"), secs(60));
    assert_eq!(rate_limit("30:transaction:key"), None);
    assert_eq!(
        rate_limit("2700:transaction:key, 320:error;default:organization:quota_exceeded"),
        secs(320)
    );
    assert_eq!(
        rate_limit("10:default:project, 20:error:key:spike_protection, 99:session"),
        secs(20)
    );
    assert_eq!(
        rate_limit("1.5:error:key"),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        rate_limit("2700:metric_bucket:organization:quota_exceeded:custom"),
        None
    );
    assert_eq!(rate_limit("garbage, :error"), None);
    assert_eq!(rate_limit("999999:error"), secs(3600));
}

#[test]
fn pause_holds_the_next_delivery_and_only_grows() {
    let sink = SentrySink::from_dsn_str(DSN).unwrap();
    assert_eq!(sink.paused_for(), None);
    sink.pause(Duration::from_secs(60));
    sink.pause(Duration::from_secs(1));
    let left = sink.paused_for().unwrap();
    assert!(
        left > Duration::from_secs(50) && left <= Duration::from_secs(60),
        "{left:?}"
    );
}

#[test]
fn errors_are_described_from_json_or_text() {
    assert_eq!(
        description(r#"{"detail":"invalid event"}"#),
        "invalid event"
    );
    assert_eq!(description("bad things"), "bad things");
    assert_eq!(description("<html><body>502</body></html>"), "");
}

#[test]
fn message_event_carries_the_alert() {
    let n = notification(
        Alert::error("Payment failed")
            .detail("card declined")
            .label("route", "/pay")
            .label("service", "not-ours")
            .label("with space/and\u{e9}", "multi\nline")
            .label("empty", " ")
            .label("this-label-name-is-way-longer-than-32-chars", "v"),
    )
    .with_similar(3);
    let e = event::event(&n);
    assert_eq!(e.level, Level::Error);
    assert_eq!(
        e.message.as_deref(),
        Some("Payment failed\ncard declined\n(+3 similar in the last 5m)")
    );
    assert!(e.exception.is_empty());
    assert_eq!(e.fingerprint.len(), 1);
    assert_eq!(e.fingerprint[0], n.key());
    assert_eq!(e.logger.as_deref(), Some("watchpost"));
    assert_eq!(e.platform, "other");
    assert_eq!(e.release.as_deref(), Some("1.4.2"));
    assert_eq!(e.environment.as_deref(), Some("production"));
    assert_eq!(e.server_name.as_deref(), Some("web-1"));
    assert_eq!(e.timestamp, n.time());
    assert_eq!(e.tags["route"], "/pay");
    assert_eq!(e.tags["service"], "checkout-api");
    assert_eq!(e.tags["watchpost.kind"], "alert");
    assert_eq!(e.tags["watchpost.severity"], "error");
    assert_eq!(e.tags["with_space_and_"], "multi line");
    assert!(!e.tags.contains_key("empty"));
    assert_eq!(e.tags["this-label-name-is-way-longer-th"], "v");
    assert_eq!(e.extra["watchpost.similar"], 3);
    assert_eq!(e.sdk.as_ref().map(|s| s.name.as_str()), Some("watchpost"));
    assert_eq!(e.event_id.get_version_num(), 4);
    assert_ne!(
        e.event_id,
        event::event(&n).event_id,
        "a fresh id per event"
    );
}

#[test]
fn levels_follow_severity_and_resolved_is_info() {
    for (alert, level) in [
        (Alert::info("i"), Level::Info),
        (Alert::warning("w"), Level::Warning),
        (Alert::error("e"), Level::Error),
        (Alert::critical("c"), Level::Fatal),
    ] {
        assert_eq!(event::event(&notification(alert)).level, level);
    }
    let resolved =
        notification(Alert::critical("Queue depth 1200")).with_kind(NotificationKind::Resolved {
            duration: Duration::from_secs(252),
        });
    let e = event::event(&resolved);
    assert_eq!(e.level, Level::Info);
    assert_eq!(e.tags["watchpost.kind"], "resolved");
    assert_eq!(e.tags["watchpost.severity"], "critical");
    assert_eq!(
        e.message.as_deref(),
        Some("RESOLVED: Queue depth 1200\nlasted 4m 12s")
    );
    assert_eq!(e.extra["watchpost.duration"], "4m 12s");
    let firing =
        notification(Alert::warning("Queue depth 1200")).with_kind(NotificationKind::Firing);
    let f = event::event(&firing);
    assert_eq!(f.message.as_deref(), Some("FIRING: Queue depth 1200"));
    assert_eq!(f.tags["watchpost.kind"], "firing");
    assert_eq!(f.fingerprint, e.fingerprint, "one issue per incident");
}

#[test]
fn long_messages_and_tags_are_capped() {
    let n = notification(
        Alert::error("t")
            .detail("é".repeat(20_000))
            .label("k", "v".repeat(500)),
    );
    let e = event::event(&n);
    let message = e.message.unwrap();
    assert_eq!(message.chars().count(), 8192);
    assert!(message.ends_with('…'));
    assert_eq!(e.tags["k"].chars().count(), 200);
}

#[test]
fn panic_report_becomes_an_exception_oldest_frame_first() {
    let report = PanicReport::new(
        "called `Option::unwrap()` on a `None` value",
        Some("src/orders.rs:88:41"),
        "tokio-runtime-worker",
        vec![
            StackFrame::parse("shop::orders::total", Some("at ./src/orders.rs:88:41")),
            StackFrame::parse(
                "shop::orders::show::{{closure}}",
                Some("at ./src/orders.rs:31:17"),
            ),
            StackFrame::parse("core::ops::function::FnOnce::call_once", None),
        ],
    );
    let alert = Alert::critical("panic: called `Option::unwrap()` on a `None` value")
        .key("panic:src/orders.rs:88:41")
        .detail("at src/orders.rs:88:41")
        .label("location", "src/orders.rs:88:41")
        .with_panic_report(report);
    let e = event::event(&notification(alert));
    assert_eq!(e.level, Level::Fatal);
    assert_eq!(e.platform, "native");
    assert_eq!(e.message, None);
    assert_eq!(e.fingerprint[0], "panic:src/orders.rs:88:41");
    assert_eq!(e.exception.len(), 1);
    let ex = &e.exception[0];
    assert_eq!(ex.ty, "panic");
    assert_eq!(
        ex.value.as_deref(),
        Some("called `Option::unwrap()` on a `None` value")
    );
    let mechanism = ex.mechanism.as_ref().unwrap();
    assert_eq!(
        (mechanism.ty.as_str(), mechanism.handled),
        ("panic", Some(false))
    );
    let frames = &ex.stacktrace.as_ref().unwrap().frames;
    let functions: Vec<_> = frames
        .iter()
        .map(|f| f.function.as_deref().unwrap())
        .collect();
    assert_eq!(
        functions,
        [
            "core::ops::function::FnOnce::call_once",
            "shop::orders::show::{{closure}}",
            "shop::orders::total"
        ]
    );
    let last = frames.last().unwrap();
    assert_eq!(last.filename.as_deref(), Some("orders.rs"));
    assert_eq!(last.abs_path.as_deref(), Some("./src/orders.rs"));
    assert_eq!((last.lineno, last.colno), (Some(88), Some(41)));
    assert_eq!(last.in_app, None);
    assert_eq!(frames[0].in_app, Some(false));
}

#[test]
fn panic_without_frames_has_no_stacktrace() {
    let alert = Alert::critical("panic: boom").with_panic_report(PanicReport::new(
        "boom",
        None,
        "main",
        Vec::new(),
    ));
    let e = event::event(&notification(alert));
    assert!(e.exception[0].stacktrace.is_none());
}

#[test]
fn envelope_round_trips_through_sentry_types() {
    let n = notification(Alert::warning("Disk 91% full").label("disk", "/var"));
    let body = event::envelope_bytes(&n).unwrap();
    let envelope = Envelope::from_slice(&body).unwrap();
    let e = envelope.event().unwrap();
    assert_eq!(envelope.uuid(), Some(&e.event_id));
    assert_eq!(e.level, Level::Warning);
    assert_eq!(e.tags["disk"], "/var");
    assert_eq!(e.message.as_deref(), Some("Disk 91% full"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.lines().nth(1).unwrap().contains(r#""type":"event""#),
        "{text}"
    );
    assert!(!text.contains(KEY));
}

#[test]
fn not_paced() {
    assert_eq!(
        SentrySink::from_dsn_str(DSN).unwrap().pacing(),
        Pacing::NONE
    );
    assert_eq!(SentrySink::from_dsn_str(DSN).unwrap().name(), "sentry");
}
