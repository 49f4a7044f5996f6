use super::*;
use crate::alert::model::{Alert, ServiceInfo};
use crate::alert::sink::SinkErrorKind;
use std::sync::Arc;

fn notification(alert: Alert) -> Notification {
    let mut service = ServiceInfo::new("checkout-api");
    service.environment = Some("production".into());
    service.host = "web-1".into();
    Notification::new(alert, Arc::new(service))
}

#[test]
fn format_parses_its_names() {
    for (s, f) in [
        ("json", WebhookFormat::Json),
        ("alertmanager", WebhookFormat::Json),
        (" Slack\n", WebhookFormat::Slack),
        ("DISCORD", WebhookFormat::Discord),
    ] {
        assert_eq!(s.parse::<WebhookFormat>(), Ok(f), "{s:?}");
    }
    for f in [
        WebhookFormat::Json,
        WebhookFormat::Slack,
        WebhookFormat::Discord,
    ] {
        assert_eq!(f.to_string().parse::<WebhookFormat>(), Ok(f));
        assert_eq!(f.to_string(), f.as_str());
    }
}

#[test]
fn unknown_format_lists_the_accepted_ones() {
    let err = "teams".parse::<WebhookFormat>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown webhook format \"teams\", expected json (or alertmanager), slack or discord"
    );
    // A URL pasted into the wrong variable isn't repeated.
    let err = "https://hooks.slack.com/services/T0/B0/s3cret"
        .parse::<WebhookFormat>()
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cret"), "{err}");
    assert!(err.contains("slack or discord"), "{err}");
}

#[test]
fn format_is_inferred_from_the_host() {
    let cases = [
        (
            "https://hooks.slack.com/services/T0/B0/x",
            WebhookFormat::Slack,
        ),
        ("https://HOOKS.SLACK.COM/services/x", WebhookFormat::Slack),
        (
            "https://discord.com/api/webhooks/1/tok",
            WebhookFormat::Discord,
        ),
        (
            "https://discordapp.com/api/webhooks/1/tok",
            WebhookFormat::Discord,
        ),
        (
            "https://ptb.discord.com/api/webhooks/1/tok",
            WebhookFormat::Discord,
        ),
        (
            "https://canary.discord.com/api/webhooks/1/tok",
            WebhookFormat::Discord,
        ),
        (
            "https://discord.com/api/v10/webhooks/1/tok",
            WebhookFormat::Discord,
        ),
        (
            "https://discord.com/api/webhooks/1/tok/slack",
            WebhookFormat::Slack,
        ),
        // Discord, but not a webhook path.
        ("https://discord.com/channels/1/2", WebhookFormat::Json),
        ("https://discord.com/api/vx/webhooks/1", WebhookFormat::Json),
        // Look-alikes.
        (
            "https://hooks.slack.com.evil.example/services/x",
            WebhookFormat::Json,
        ),
        (
            "https://notdiscord.com/api/webhooks/1/tok",
            WebhookFormat::Json,
        ),
        ("https://alerts.example.com/hook", WebhookFormat::Json),
        ("http://127.0.0.1:9093/api/v2/alerts", WebhookFormat::Json),
        ("not a url", WebhookFormat::Json),
    ];
    for (url, format) in cases {
        assert_eq!(WebhookFormat::infer(url), format, "{url}");
    }
}

#[test]
fn new_refuses_bad_urls_without_quoting_them() {
    for url in [
        "hooks.slack.com/services/T0/B0/s3cret",
        "ftp://example.com/s3cret",
        "https://",
        "http://:80/s3cret",
        "",
    ] {
        let err = WebhookSink::new(url, WebhookFormat::Json).unwrap_err();
        assert_eq!(err.name(), Some(URL_VAR));
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
    assert!(WebhookSink::new(" https://example.com/x\n", WebhookFormat::Json).is_ok());
}

#[test]
fn debug_shows_scheme_and_host_only() {
    let sink = WebhookSink::new(
        "https://user:pw@example.com:8443/hook/s3cret?token=t0k",
        WebhookFormat::Json,
    )
    .unwrap()
    .with_header(
        reqwest::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer b3arer"),
    );
    let debug = format!("{sink:?}");
    assert_eq!(
        debug,
        r#"WebhookSink { format: Json, url: "https://example.com:8443/…", headers: ["authorization"] }"#
    );
}

#[test]
fn names_and_pacing_follow_the_format() {
    let sink = |f| WebhookSink::new("https://example.com/x", f).unwrap();
    assert_eq!(sink(WebhookFormat::Json).name(), "webhook");
    assert_eq!(sink(WebhookFormat::Slack).name(), "slack");
    assert_eq!(sink(WebhookFormat::Discord).name(), "discord");
    assert_eq!(sink(WebhookFormat::Json).pacing(), Pacing::NONE);
    assert_eq!(
        sink(WebhookFormat::Discord).pacing(),
        Pacing::every(Duration::from_secs(1)).per_minute(30)
    );
}

#[test]
fn cut_respects_char_boundaries_and_cost() {
    let s = "ééééé";
    assert_eq!(cut(s, 5, |_| 1), "ééééé");
    let c = cut("ééééééééééééééééééé", 14, |_| 1);
    assert_eq!(c, "éé…(truncated)");
    // Escaping cost: each '&' takes 5.
    let ampersands = "&".repeat(100);
    assert_eq!(cut(&ampersands, 12 + 10, slack_cost), "&&…(truncated)");
    assert_eq!(cut("abc", 1, |_| 1), "a");
}

#[test]
fn slack_escapes_and_stays_under_its_limit() {
    let n = notification(
        Alert::error("A & B <c>")
            .detail("x < y && ```z```")
            .label("route", "/a>b"),
    );
    let text = slack_text(&n);
    assert!(
        text.starts_with("*🔴 A &amp; B &lt;c&gt;*\nerror · checkout-api"),
        "{text}"
    );
    assert!(
        text.contains("x &lt; y &amp;&amp; `\u{200b}`\u{200b}`z"),
        "{text}"
    );
    assert!(text.contains("route=/a&gt;b"), "{text}");

    let huge = notification(Alert::error("Big").detail("<&>".repeat(50_000)));
    let text = slack_text(&huge);
    assert!(text.chars().count() <= SLACK_TEXT_LIMIT);
    assert!(text.contains(TRUNCATED));
    assert!(!text.contains("&am…"), "an entity was cut");
}

#[test]
fn discord_content_fits_even_with_a_huge_title() {
    let n = notification(Alert::critical("🔥".repeat(3000)).detail("d".repeat(10)));
    let content = discord_content(&n);
    assert!(content.encode_utf16().count() <= DISCORD_CONTENT_LIMIT);
    assert!(content.ends_with(TRUNCATED));

    let n = notification(Alert::error("a_b *c*").detail("é".repeat(5000)));
    let content = discord_content(&n);
    assert!(content.starts_with("**🔴 a\\_b \\*c\\***\n"), "{content}");
    assert!(content.chars().count() <= DISCORD_CONTENT_LIMIT);
    assert!(content.contains(&format!("é{TRUNCATED}\n```")), "{content}");
}

#[test]
fn fingerprints_are_stable_per_key() {
    assert_eq!(key_fingerprint("0123456789abcdef"), "0123456789abcdef");
    let a = key_fingerprint("queue-depth");
    assert_eq!(a.len(), 16);
    assert_eq!(a, key_fingerprint("queue-depth"));
    assert_ne!(a, key_fingerprint("queue-depth-2"));
    assert_ne!(key_fingerprint("disk-1"), key_fingerprint("disk-2"));
}

#[test]
fn timestamps_never_panic() {
    assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    let past = SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(10));
    if let Some(past) = past {
        assert_eq!(rfc3339(past), "1970-01-01T00:00:00.000Z");
    }
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
    assert!(rfc3339(far).starts_with("9999-12-31T23:59:59"));
}

#[test]
fn errors_map_like_the_apis_mean() {
    let kind = |e: SinkError| e.kind();
    assert_eq!(
        kind(slack_error(
            StatusCode::BAD_REQUEST,
            None,
            "invalid_payload"
        )),
        SinkErrorKind::Rejected
    );
    assert_eq!(
        kind(slack_error(StatusCode::FORBIDDEN, None, "invalid_token")),
        SinkErrorKind::Disabled
    );
    assert_eq!(
        kind(slack_error(StatusCode::GONE, None, "channel_is_archived")),
        SinkErrorKind::Disabled
    );
    assert_eq!(
        kind(slack_error(
            StatusCode::FORBIDDEN,
            None,
            "action_prohibited"
        )),
        SinkErrorKind::Rejected
    );
    let e = discord_error(
        StatusCode::NOT_FOUND,
        None,
        r#"{"message": "Unknown Webhook", "code": 10015}"#,
    );
    assert_eq!(e.kind(), SinkErrorKind::Disabled);
    assert_eq!(e.message(), "HTTP 404: Unknown Webhook (code 10015)");
    assert_eq!(
        kind(discord_error(StatusCode::NOT_FOUND, None, "<html>")),
        SinkErrorKind::Rejected
    );
    assert_eq!(
        kind(discord_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(1)),
            r#"{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}"#,
        )),
        SinkErrorKind::RateLimited {
            retry_after: Duration::from_millis(250)
        }
    );
    assert_eq!(
        json_error(StatusCode::BAD_REQUEST, None, r#"{"error":"bad labels"}"#).message(),
        "HTTP 400: bad labels"
    );
    assert_eq!(
        kind(json_error(StatusCode::FORBIDDEN, None, "")),
        SinkErrorKind::Rejected
    );
}
