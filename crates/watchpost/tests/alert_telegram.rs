//! The Telegram sink against a fake Bot API that answers like the real one.
#![cfg(feature = "telegram")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{json, Value};
use watchpost::alert::{Alert, Alerter, Stats, TelegramSink, TelegramSinkBuilder};
use watchpost_testkit::fake_http::{
    closed_port, telegram_error, telegram_ok, FakeHttp, Recorded, Reply,
};

const TOKEN: &str = "123456:TEST-token_abc";
const PATH: &str = "/bot123456:TEST-token_abc/sendMessage";
/// Only catches hangs: every test here finishes in a few seconds.
const FLUSH: Duration = Duration::from_secs(30);

fn sink(server: &FakeHttp, chat: &str) -> TelegramSinkBuilder {
    TelegramSink::builder(TOKEN, chat).api_url(server.url())
}

fn alerter(sink: TelegramSinkBuilder) -> Alerter {
    Alerter::builder()
        .service("checkout-api")
        .environment("production")
        .host("web-1")
        .version("1.4.2")
        .sink(sink.build().unwrap())
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .max_attempts(3)
        .build()
        .unwrap()
}

fn flushed(alerter: &Alerter) -> Stats {
    assert!(alerter.flush(FLUSH), "not flushed: {:?}", alerter.stats());
    alerter.stats()
}

fn bodies(server: &FakeHttp) -> Vec<Value> {
    server.requests().iter().map(Recorded::json).collect()
}

fn text(body: &Value) -> &str {
    body["text"].as_str().unwrap()
}

#[test]
fn request_shape_follows_the_bot_api() {
    let server = FakeHttp::start(telegram_ok());
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Payment failed").detail("card declined"));
    a.send(Alert::info("Deploy finished"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (2, 0));

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, PATH);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
    }
    let error = requests[0].json();
    assert_eq!(error["chat_id"], json!(42));
    assert_eq!(error["parse_mode"], "HTML");
    assert_eq!(error["link_preview_options"], json!({"is_disabled": true}));
    assert!(error.get("message_thread_id").is_none());
    assert!(error.get("disable_notification").is_none());
    assert_eq!(
        text(&error),
        "<b>🔴 Payment failed</b>\n<i>error · checkout-api · production · web-1 · v1.4.2</i>\n\
         <pre>card declined</pre>"
    );
    let info = requests[1].json();
    assert_eq!(info["disable_notification"], true);
    assert!(text(&info).starts_with("<b>ℹ️ Deploy finished</b>\n"));
}

#[test]
fn channel_names_threads_and_loud_info() {
    let server = FakeHttp::start(telegram_ok());
    let a = alerter(sink(&server, "@ops_alerts").thread_id(7).silent_info(false));
    a.send(Alert::info("Deploy finished"));
    flushed(&a);
    let body = &bodies(&server)[0];
    assert_eq!(body["chat_id"], "@ops_alerts");
    assert_eq!(body["message_thread_id"], 7);
    assert!(body.get("disable_notification").is_none());
}

#[test]
fn user_strings_are_escaped() {
    let server = FakeHttp::start(telegram_ok());
    let a = Alerter::builder()
        .service("<svc>&co")
        .host("h")
        .sink(sink(&server, "42").build().unwrap())
        .build()
        .unwrap();
    a.send(
        Alert::error("x < y && z > w")
            .detail("</pre><b>boom</b>")
            .label("q", "a<b"),
    );
    flushed(&a);
    let body = &bodies(&server)[0];
    assert_eq!(
        text(body),
        "<b>🔴 x &lt; y &amp;&amp; z &gt; w</b>\n<i>error · &lt;svc&gt;&amp;co · h</i>\n\
         <pre>&lt;/pre&gt;&lt;b&gt;boom&lt;/b&gt;</pre>\n<code>q</code>=a&lt;b"
    );
}

#[test]
fn a_huge_detail_is_one_truncated_message() {
    let server = FakeHttp::start(telegram_ok());
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Stack overflow").detail("<&>".repeat(6667)));
    assert_eq!(flushed(&a).sent, 1);
    let bodies = bodies(&server);
    assert_eq!(bodies.len(), 1);
    let text = text(&bodies[0]);
    assert!(text.chars().count() <= 4096, "{}", text.chars().count());
    assert!(text.starts_with("<b>🔴 Stack overflow</b>"));
    assert!(
        text.ends_with("…(truncated)</pre>"),
        "{}",
        &text[text.len() - 40..]
    );
    assert!(text.contains("&lt;&amp;&gt;"));
}

#[test]
fn rate_limit_waits_retry_after_and_delivers() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_error(
        429,
        "Too Many Requests: retry after 1",
        Some(json!({"retry_after": 1})),
    ));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Busy"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 2);
    assert_eq!((stats.sent, stats.failed), (1, 0));
}

#[test]
fn rate_limits_do_not_use_up_the_attempts() {
    let server = FakeHttp::start(telegram_ok());
    for _ in 0..3 {
        server.push(
            telegram_error(429, "Too Many Requests: retry after 0", None)
                .header("retry-after", "0"),
        );
    }
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Busy"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 4);
    assert_eq!((stats.sent, stats.failed), (1, 0));
}

#[test]
fn server_error_then_ok_is_delivered() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_error(500, "Internal Server Error", None));
    server.push(Reply::text(502, "<html>Bad Gateway</html>"));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Flaky"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 3);
    assert_eq!((stats.sent, stats.failed), (1, 0));
}

#[test]
fn always_502_gives_up_after_max_attempts() {
    let server = FakeHttp::start(Reply::text(502, "Bad Gateway"));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Down"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 3);
    assert_eq!((stats.sent, stats.failed), (0, 1));
}

#[test]
fn a_timeout_is_retried() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_ok().delay(Duration::from_secs(5)));
    let a = Alerter::builder()
        .sink(sink(&server, "42").build().unwrap())
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .max_attempts(3)
        .attempt_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    a.send(Alert::error("Slow"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 2);
    assert_eq!((stats.sent, stats.failed), (1, 0));
}

#[test]
fn connection_refused_fails_after_the_attempts_without_hanging() {
    let a = alerter(
        TelegramSink::builder(TOKEN, "42").api_url(format!("http://127.0.0.1:{}", closed_port())),
    );
    a.send(Alert::error("Nobody home"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (0, 1));
}

#[test]
fn chat_not_found_is_not_retried() {
    let server = FakeHttp::start(telegram_error(400, "Bad Request: chat not found", None));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Lost"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 1);
    assert_eq!((stats.sent, stats.failed), (0, 1));
}

#[test]
fn blocked_bot_is_not_retried() {
    let server = FakeHttp::start(telegram_error(
        403,
        "Forbidden: bot was blocked by the user",
        None,
    ));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Blocked"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 1);
    assert_eq!((stats.sent, stats.failed), (0, 1));
}

#[test]
fn unauthorized_disables_the_sink() {
    let server = FakeHttp::start(telegram_error(401, "Unauthorized", None));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("First"));
    flushed(&a);
    a.send(Alert::error("Second"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 1);
    assert_eq!((stats.sent, stats.failed), (0, 2));
}

#[test]
fn not_found_disables_the_sink() {
    let server = FakeHttp::start(telegram_error(404, "Not Found", None));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("First"));
    a.send(Alert::error("Second"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 1);
    assert_eq!((stats.sent, stats.failed), (0, 2));
}

#[test]
fn unparsable_html_is_resent_as_plain_text() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_error(
        400,
        "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 4",
        None,
    ));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("a <x> b").detail("d & e").label("k", "v"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (1, 0));
    let bodies = bodies(&server);
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["parse_mode"], "HTML");
    assert!(bodies[1].get("parse_mode").is_none());
    assert_eq!(bodies[1]["chat_id"], 42);
    assert_eq!(
        text(&bodies[1]),
        "🔴 a <x> b\nerror · checkout-api · production · web-1 · v1.4.2\nd & e\nk=v"
    );
}

#[test]
fn plain_text_fallback_is_still_truncated() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_error(
        400,
        "Bad Request: can't parse entities: whatever",
        None,
    ));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Big").detail("é<".repeat(10_000)));
    assert_eq!(flushed(&a).sent, 1);
    let bodies = bodies(&server);
    let plain = text(&bodies[1]);
    assert!(plain.chars().count() <= 4096);
    assert!(plain.ends_with("…(truncated)"));
}

#[test]
fn unparsable_twice_is_rejected_after_one_resend() {
    let server = FakeHttp::start(telegram_error(
        400,
        "Bad Request: can't parse entities: whatever",
        None,
    ));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("Odd"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 2);
    assert_eq!((stats.sent, stats.failed), (0, 1));
}

#[test]
fn upgraded_group_is_followed_to_the_supergroup() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_error(
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        Some(json!({"migrate_to_chat_id": -1_001_234_567_890_i64})),
    ));
    let a = alerter(sink(&server, "-4242"));
    a.send(Alert::error("First"));
    flushed(&a);
    a.send(Alert::error("Second"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (2, 0));
    let chats: Vec<Value> = bodies(&server)
        .iter()
        .map(|b| b["chat_id"].clone())
        .collect();
    assert_eq!(
        chats,
        [
            json!(-4242),
            json!(-1_001_234_567_890_i64),
            json!(-1_001_234_567_890_i64)
        ]
    );
    let texts: Vec<String> = bodies(&server).iter().map(|b| text(b).to_owned()).collect();
    assert!(texts[1].contains("First") && texts[2].contains("Second"));
}

#[test]
fn identical_alerts_send_one_message() {
    let server = FakeHttp::start(telegram_ok());
    let a = alerter(sink(&server, "42"));
    for _ in 0..50 {
        a.send(Alert::error("db timeout after 1012 ms"));
    }
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 1);
    assert_eq!((stats.sent, stats.suppressed, stats.failed), (1, 49, 0));
}

#[test]
fn an_incident_is_two_messages() {
    let server = FakeHttp::start(telegram_ok());
    let a = alerter(sink(&server, "42"));
    for _ in 0..3 {
        a.fire("queue-depth", Alert::warning("Queue depth 1200"));
    }
    a.resolve("queue-depth");
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (2, 0));
    let bodies = bodies(&server);
    assert_eq!(bodies.len(), 2);
    assert!(text(&bodies[0]).starts_with("<b>⚠️ FIRING: Queue depth 1200</b>"));
    let resolved = text(&bodies[1]);
    assert!(resolved.starts_with("<b>✅ RESOLVED: Queue depth 1200</b>"));
    assert!(resolved.contains("\nlasted "), "{resolved}");
}

#[test]
fn paced_group_messages_all_arrive_in_order() {
    let server = FakeHttp::start(telegram_ok());
    let a = alerter(sink(&server, "-1001234567890"));
    for title in ["one", "two", "three"] {
        a.send(Alert::error(title).key(title));
    }
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (3, 0));
    let titles: Vec<String> = bodies(&server)
        .iter()
        .map(|b| {
            assert_eq!(b["chat_id"], -1_001_234_567_890_i64);
            text(b).lines().next().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        titles,
        ["<b>🔴 one</b>", "<b>🔴 two</b>", "<b>🔴 three</b>"]
    );
}

#[test]
fn an_ok_false_or_non_json_200_is_rejected() {
    let server = FakeHttp::start(telegram_ok());
    server.push(Reply::json(200, json!({"ok": false, "description": "odd"})));
    server.push(Reply::text(200, "hello"));
    let a = alerter(sink(&server, "42"));
    a.send(Alert::error("one").key("1"));
    a.send(Alert::error("two").key("2"));
    let stats = flushed(&a);
    assert_eq!(server.requests().len(), 2);
    assert_eq!((stats.sent, stats.failed), (0, 2));
}
