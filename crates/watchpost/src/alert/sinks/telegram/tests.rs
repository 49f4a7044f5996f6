use super::*;
use crate::alert::model::{Alert, ServiceInfo};
use crate::alert::notification::NotificationKind;
use proptest::prelude::*;
use std::sync::Arc;

const TOKEN: &str = "123456:SECRET-TOKEN-abcdef";

fn service() -> Arc<ServiceInfo> {
    let mut s = ServiceInfo::new("api");
    s.environment = Some("production".into());
    s.host = "web-1".into();
    s.version = Some("1.4.2".into());
    Arc::new(s)
}

fn html(alert: Alert) -> String {
    render(&Notification::new(alert, service()), Markup::Html)
}

/// The checks the proptest makes: length, entities, balanced tags.
fn check_html(text: &str) {
    assert!(
        text.chars().count() <= MAX_CHARS,
        "{}",
        text.chars().count()
    );
    for (i, _) in text.match_indices('&') {
        let rest = &text[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "bare & at {i}"
        );
    }
    let mut open: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['<', '>']) {
        assert_eq!(&rest[start..=start], "<", "bare > in {text:?}");
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "< inside a tag");
        match tag.strip_prefix('/') {
            Some(name) => assert_eq!(open.pop(), Some(name), "unbalanced </{name}>"),
            None => {
                assert!(
                    ["b", "i", "pre", "code"].contains(&tag),
                    "unknown tag {tag}"
                );
                open.push(tag);
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed {open:?}");
}

#[test]
fn title_first_then_context_detail_labels_similar() {
    let n = Notification::new(
        Alert::error("Payment failed")
            .detail("card declined")
            .label("route", "/pay"),
        service(),
    )
    .with_similar(3);
    assert_eq!(
        render(&n, Markup::Html),
        "<b>🔴 Payment failed</b>\n<i>error · api · production · web-1 · v1.4.2</i>\n\
         <pre>card declined</pre>\n<code>route</code>=/pay\n(+3 similar in the last 5m)"
    );
    let resolved = n.with_kind(NotificationKind::Resolved {
        duration: Duration::from_secs(252),
    });
    let text = render(&resolved, Markup::Html);
    assert!(text.starts_with("<b>✅ RESOLVED: Payment failed</b>\n<i>"));
    assert!(text.contains("</i>\nlasted 4m 12s\n<pre>"));
}

#[test]
fn plain_text_is_to_plain_text_when_nothing_is_cut() {
    let n = Notification::new(
        Alert::warning("a <b> & c")
            .detail("x < y")
            .label("k", "v&w")
            .label("route", "/x"),
        service(),
    )
    .with_similar(2);
    assert_eq!(render(&n, Markup::Plain), n.to_plain_text());
}

#[test]
fn every_user_string_is_escaped() {
    let mut s = ServiceInfo::new("a<b>");
    s.environment = Some("p&q".into());
    s.host = "<h>".into();
    s.version = Some("1<2".into());
    let n = Notification::new(
        Alert::error("<script>&")
            .detail("</pre><b>")
            .label("<n>", "<v&>"),
        Arc::new(s),
    );
    let text = render(&n, Markup::Html);
    check_html(&text);
    assert!(text.contains("&lt;script&gt;&amp;"));
    assert!(text.contains("a&lt;b&gt; · p&amp;q · &lt;h&gt; · v1&lt;2"));
    assert!(text.contains("<pre>&lt;/pre&gt;&lt;b&gt;</pre>"));
    assert!(text.contains("<code>&lt;n&gt;</code>=&lt;v&amp;&gt;"));
}

#[test]
fn long_detail_is_cut_with_a_marker_and_the_rest_kept() {
    let detail = "<&>é😀".repeat(4000);
    let text = html(Alert::error("Boom").detail(detail).label("route", "/x"));
    check_html(&text);
    assert!(text.starts_with("<b>🔴 Boom</b>\n"));
    assert!(text.contains("…(truncated)</pre>\n<code>route</code>=/x"));
    // Filled close to the limit, not cut needlessly short.
    assert!(
        text.chars().count() > MAX_CHARS - 10,
        "{}",
        text.chars().count()
    );
}

#[test]
fn huge_title_labels_and_service_cannot_push_it_over() {
    let mut s = ServiceInfo::new("&".repeat(5000));
    s.host = "<".repeat(5000);
    let mut alert = Alert::critical("&".repeat(10_000)).detail(">".repeat(10_000));
    for i in 0..200 {
        alert = alert.label(format!("{i}{}", "&".repeat(100)), "<".repeat(1000));
    }
    let text = render(&Notification::new(alert, Arc::new(s)), Markup::Html);
    check_html(&text);
    assert!(text.contains("more)"));
    assert!(text.contains("…(truncated)</pre>"));
}

#[test]
fn short_budget_drops_the_detail_rather_than_overflowing() {
    assert_eq!(fitted(Markup::Html, "<<<<", 5), None);
    assert_eq!(
        fitted(Markup::Html, "<<<<", 16).as_deref(),
        Some("&lt;&lt;&lt;&lt;")
    );
    assert_eq!(
        fitted(Markup::Html, "<<<<", 15).as_deref(),
        Some("…(truncated)")
    );
    assert_eq!(
        fitted(Markup::Plain, &"é".repeat(20), 14).as_deref(),
        Some("éé…(truncated)")
    );
}

proptest! {
    #[test]
    fn any_input_renders_to_valid_bounded_html(
        title in "[<>&é😀a\n]{0,600}",
        detail in prop::option::of("[<>&é😀 a\n]{0,9000}"),
        labels in prop::collection::vec(("[<>&é😀a]{0,80}", "[<>&é😀a]{0,300}"), 0..30),
        host in "[<>&é😀a]{0,400}",
        similar in 0u64..1000,
        resolved in any::<bool>(),
    ) {
        let mut s = ServiceInfo::new("svc&");
        s.host = host;
        let mut alert = Alert::error(title);
        if let Some(d) = detail {
            alert = alert.detail(d);
        }
        for (name, value) in labels {
            alert = alert.label(name, value);
        }
        let mut n = Notification::new(alert, Arc::new(s)).with_similar(similar);
        if resolved {
            n = n.with_kind(NotificationKind::Resolved { duration: Duration::from_secs(99) });
        }
        check_html(&render(&n, Markup::Html));
        prop_assert!(render(&n, Markup::Plain).chars().count() <= MAX_CHARS);
    }
}

#[test]
fn tokens_are_checked_without_being_quoted() {
    for bad in [
        "",
        " 123456:SECRET-TOKEN-abcdef",
        "123456:SECRET-TOKEN-abcdef\n",
        "SECRET-TOKEN-abcdef",
        "123456:",
        ":SECRET-TOKEN-abcdef",
        "12a456:SECRET-TOKEN-abcdef",
        "123456:SECRET/TOKEN-abcdef",
        "123456:SECRET-TOKEN-abcdéf",
    ] {
        let err = TelegramSink::builder(bad, "42").build().unwrap_err();
        assert_eq!(err.name(), Some("TELEGRAM_BOT_TOKEN"), "{bad:?}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }
    assert!(TelegramSink::builder(TOKEN, "42").build().is_ok());
    assert!(TelegramSink::builder("1:x", "42").build().is_ok());
}

#[test]
fn chat_ids_are_numbers_or_channel_names() {
    for good in ["42", "-1001234567890", "@my_channel"] {
        assert!(TelegramSink::builder(TOKEN, good).build().is_ok(), "{good}");
    }
    for bad in ["", "@", "my_channel", "4 2", "@with space", TOKEN] {
        let err = TelegramSink::builder(TOKEN, bad).build().unwrap_err();
        assert_eq!(err.name(), Some("TELEGRAM_CHAT_ID"), "{bad:?}");
        assert!(!err.to_string().contains("SECRET"));
    }
}

#[test]
fn api_url_must_be_http() {
    for good in ["http://127.0.0.1:8081", "https://proxy.example/tg/"] {
        let sink = TelegramSink::builder(TOKEN, "42")
            .api_url(good)
            .build()
            .unwrap();
        assert!(sink
            .endpoint
            .as_str()
            .ends_with("/bot123456:SECRET-TOKEN-abcdef/sendMessage"));
        assert!(!sink.endpoint.as_str().contains("//bot"));
    }
    for bad in [
        "",
        "api.telegram.org",
        "ftp://x",
        "http://x/?a=1",
        "unix:/tmp/sock",
    ] {
        let err = TelegramSink::builder(TOKEN, "42")
            .api_url(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.name(), Some("WATCHPOST_TELEGRAM_API_URL"), "{bad:?}");
    }
}

#[test]
fn debug_shows_chat_and_host_never_the_token() {
    let builder = TelegramSink::builder(TOKEN, "-100123").api_url("http://127.0.0.1:9");
    assert!(!format!("{builder:?}").contains("SECRET"));
    let sink = builder.build().unwrap();
    let debug = format!("{sink:?}");
    assert!(
        debug.contains("-100123") && debug.contains("127.0.0.1:9"),
        "{debug}"
    );
    assert!(
        !debug.contains("SECRET") && !debug.contains("123456:"),
        "{debug}"
    );
}

#[test]
fn groups_and_channels_get_the_per_minute_cap() {
    let pacing = |chat: &str| TelegramSink::builder(TOKEN, chat).build().unwrap().pacing();
    let second = Pacing::every(Duration::from_secs(1));
    assert_eq!(pacing("42"), second);
    assert_eq!(pacing("-100123"), second.per_minute(20));
    assert_eq!(pacing("@alerts"), second.per_minute(20));
}

#[test]
fn scrub_removes_the_token_and_its_secret() {
    let sink = TelegramSink::builder(TOKEN, "42").build().unwrap();
    assert_eq!(
        sink.scrub("GET /bot123456:SECRET-TOKEN-abcdef/x and SECRET-TOKEN-abcdef"),
        "GET /bot[redacted]/x and [redacted]"
    );
}
