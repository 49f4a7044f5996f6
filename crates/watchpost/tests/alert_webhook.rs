//! The webhook sink against a fake server answering like Alertmanager
//! receivers, Slack and Discord do.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "webhook")]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use watchpost::alert::{
    Alert, Alerter, AlerterBuilder, Notification, NotificationKind, ServiceInfo, Sink,
    SinkErrorKind, WebhookFormat, WebhookSink,
};
use watchpost_testkit::fake_http::{closed_port, FakeHttp, Reply};

/// The secret part of every webhook URL here.
const SECRET_PATH: &str = "/services/T000/B000/XXXX";

fn slack_ok() -> Reply {
    Reply::text(200, "ok")
}

fn discord_ok() -> Reply {
    Reply::text(204, "")
}

fn sink(server: &FakeHttp, format: WebhookFormat) -> WebhookSink {
    WebhookSink::new(format!("{}{SECRET_PATH}", server.url()), format).unwrap()
}

fn alerter(sink: WebhookSink) -> Alerter {
    Alerter::builder()
        .service("checkout-api")
        .environment("production")
        .host("web-1")
        .version("1.4.2")
        .sink(sink)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .max_attempts(3)
        .build()
        .unwrap()
}

fn flush(alerter: &Alerter) {
    assert!(
        alerter.flush(Duration::from_secs(10)),
        "queue not drained: {:?}",
        alerter.stats()
    );
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

#[test]
fn send_posts_an_alertmanager_payload() {
    let server = FakeHttp::start(Reply::text(200, ""));
    let alerter = alerter(sink(&server, WebhookFormat::Json));
    alerter.send(
        Alert::error("Payment failed")
            .detail("card declined")
            .label("route", "/pay")
            .label("severity", "not-ours"),
    );
    flush(&alerter);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, SECRET_PATH);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "watchpost");
    assert_eq!(body["truncatedAlerts"], 0);
    assert_eq!(body["externalURL"], "");
    assert_eq!(body["groupLabels"], json!({"alertname": "Payment failed"}));
    assert!(body["groupKey"]
        .as_str()
        .unwrap()
        .contains("Payment failed"));

    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a["status"], "firing");
    assert_eq!(
        a["labels"],
        json!({
            "alertname": "Payment failed",
            "severity": "error",
            "service": "checkout-api",
            "environment": "production",
            "instance": "web-1",
            "version": "1.4.2",
            "route": "/pay",
        })
    );
    assert_eq!(
        a["annotations"],
        json!({"summary": "Payment failed", "description": "card declined"})
    );
    assert_eq!(body["commonLabels"], a["labels"]);
    assert_eq!(body["commonAnnotations"], a["annotations"]);
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a["generatorURL"], "");
    let started = time(&a["startsAt"]);
    let age = SystemTime::now().duration_since(started).unwrap();
    assert!(age < Duration::from_secs(600), "{age:?}");
    let fp = a["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 16);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");

    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed), (1, 0));
}

#[test]
fn fire_and_resolve_match_like_alertmanager() {
    let server = FakeHttp::start(Reply::text(200, ""));
    let manual = watchpost::ManualClock::new();
    let alerter = Alerter::builder()
        .service("checkout-api")
        .environment("production")
        .host("web-1")
        .version("1.4.2")
        .sink(sink(&server, WebhookFormat::Json))
        .clock(manual.clock())
        .build()
        .unwrap();
    alerter.fire("queue-depth", Alert::warning("Queue depth 1200"));
    alerter.fire("queue-depth", Alert::warning("Queue depth 1300"));
    flush(&alerter);
    // Resolved a little later, so endsAt (milliseconds) is after startsAt.
    manual.advance(Duration::from_millis(20));
    alerter.resolve("queue-depth");
    flush(&alerter);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let firing = &requests[0].json();
    let resolved = &requests[1].json();
    assert_eq!(firing["status"], "firing");
    assert_eq!(resolved["status"], "resolved");
    let (f, r) = (&firing["alerts"][0], &resolved["alerts"][0]);
    assert_eq!(f["status"], "firing");
    assert_eq!(r["status"], "resolved");
    assert_eq!(f["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(f["startsAt"], r["startsAt"]);
    assert!(time(&r["endsAt"]) > time(&r["startsAt"]), "{r}");
    assert_eq!(f["fingerprint"], r["fingerprint"]);
    assert_eq!(firing["groupKey"], resolved["groupKey"]);
    assert_eq!(r["labels"]["alertname"], "Queue depth 1200");
    assert_eq!(r["labels"]["severity"], "warning");
    assert!(r["annotations"]["duration"]
        .as_str()
        .unwrap()
        .starts_with("lasted "));

    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed, stats.suppressed), (2, 0, 1));
}

#[test]
fn slack_text_escapes_ampersand_and_angle_brackets() {
    let server = FakeHttp::start(slack_ok());
    let alerter = alerter(sink(&server, WebhookFormat::Slack));
    alerter.send(
        Alert::error("R&D <script> failed")
            .detail("a < b && c > d")
            .label("team", "<!channel>"),
    );
    flush(&alerter);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let text = requests[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("*🔴 R&amp;D &lt;script&gt; failed*\n"),
        "{text}"
    );
    assert!(text.contains("error · checkout-api · production · web-1 · v1.4.2"));
    assert!(text.contains("a &lt; b &amp;&amp; c &gt; d"), "{text}");
    assert!(text.contains("team=&lt;!channel&gt;"), "{text}");
    assert!(!text.contains('<') && !text.contains('>'), "{text}");
    assert!(!text.contains("& "), "{text}");
    assert_eq!(alerter.stats().sent, 1);
}

#[test]
fn discord_content_is_capped_and_mentions_nobody() {
    let server = FakeHttp::start(discord_ok());
    let alerter = alerter(sink(&server, WebhookFormat::Discord));
    let trace = "at checkout::pay (src/pay.rs:42)\n".repeat(2_000);
    alerter.send(Alert::critical("@everyone payments down").detail(trace));
    flush(&alerter);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let body = requests[0].json();
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    let content = body["content"].as_str().unwrap();
    assert!(
        content.chars().count() <= 2000,
        "{}",
        content.chars().count()
    );
    assert!(content.starts_with("**🔥 @everyone payments down**\n"));
    assert!(content.contains("…(truncated)"));
    assert!(content.contains("at checkout::pay"));
    assert_eq!(alerter.stats().sent, 1);
}

#[test]
fn slack_429_retry_after_is_waited_out() {
    let server = FakeHttp::start(slack_ok());
    server.push(Reply::text(429, "rate_limited").header("Retry-After", "1"));
    let alerter = alerter(sink(&server, WebhookFormat::Slack));
    alerter.send(Alert::error("Queue stuck"));
    flush(&alerter);

    assert_eq!(server.requests().len(), 2);
    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed), (1, 0));
}

#[test]
fn discord_429_body_retry_after_is_honoured() {
    let server = FakeHttp::start(discord_ok());
    server.push(
        Reply::json(
            429,
            json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false}),
        )
        .header("Retry-After", "1"),
    );
    let alerter = alerter(sink(&server, WebhookFormat::Discord));
    alerter.send(Alert::error("Queue stuck"));
    flush(&alerter);

    assert_eq!(server.requests().len(), 2);
    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed), (1, 0));
}

#[tokio::test]
async fn discord_429_reports_the_bodys_retry_after() {
    let server = FakeHttp::start(
        Reply::json(
            429,
            json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false}),
        )
        .header("Retry-After", "1"),
    );
    let sink = sink(&server, WebhookFormat::Discord);
    let n = Notification::new(Alert::error("x"), Arc::new(ServiceInfo::new("api")));
    let err = sink.deliver(&n).await.unwrap_err();
    assert_eq!(
        err.kind(),
        SinkErrorKind::RateLimited {
            retry_after: Duration::from_millis(300)
        }
    );
    assert_eq!(err.message(), "HTTP 429: You are being rate limited.");
}

#[test]
fn server_errors_are_retried_until_delivered() {
    let server = FakeHttp::start(Reply::text(200, ""));
    server.push(Reply::text(502, "bad gateway"));
    server.push(Reply::text(503, "unavailable"));
    let alerter = alerter(sink(&server, WebhookFormat::Json));
    alerter.send(Alert::error("Disk full"));
    flush(&alerter);

    assert_eq!(server.requests().len(), 3);
    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed), (1, 0));
}

#[test]
fn slack_invalid_payload_is_rejected_without_retry() {
    let server = FakeHttp::start(Reply::text(400, "invalid_payload"));
    let alerter = alerter(sink(&server, WebhookFormat::Slack));
    alerter.send(Alert::error("Disk full"));
    flush(&alerter);

    assert_eq!(server.requests().len(), 1);
    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed), (0, 1));
}

#[tokio::test]
async fn slack_rejection_carries_the_api_code() {
    let server = FakeHttp::start(Reply::text(400, "invalid_payload"));
    let sink = sink(&server, WebhookFormat::Slack);
    let n = Notification::new(Alert::error("x"), Arc::new(ServiceInfo::new("api")));
    let err = sink.deliver(&n).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Rejected);
    assert_eq!(err.message(), "HTTP 400: invalid_payload");
}

#[test]
fn dead_slack_webhook_switches_the_sink_off() {
    let server = FakeHttp::start(Reply::text(404, "no_service"));
    let alerter = alerter(sink(&server, WebhookFormat::Slack));
    alerter.send(Alert::error("Disk full"));
    alerter.send(Alert::error("Queue stuck"));
    flush(&alerter);

    assert_eq!(server.requests().len(), 1);
    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed), (0, 2));
}

#[test]
fn unknown_discord_webhook_switches_the_sink_off() {
    let server = FakeHttp::start(Reply::json(
        404,
        json!({"message": "Unknown Webhook", "code": 10015}),
    ));
    let alerter = alerter(sink(&server, WebhookFormat::Discord));
    alerter.send(Alert::error("Disk full"));
    alerter.send(Alert::error("Queue stuck"));
    flush(&alerter);

    assert_eq!(server.requests().len(), 1);
    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed), (0, 2));
}

#[test]
fn generic_receiver_4xx_is_rejected_not_disabled() {
    let server = FakeHttp::start(Reply::json(404, json!({"error": "no such route"})));
    let alerter = alerter(sink(&server, WebhookFormat::Json));
    alerter.send(Alert::error("Disk full"));
    alerter.send(Alert::error("Queue stuck"));
    flush(&alerter);

    assert_eq!(server.requests().len(), 2);
    assert_eq!(alerter.stats().failed, 2);
}

#[test]
fn connection_refused_fails_after_its_attempts() {
    let url = format!("http://127.0.0.1:{}{SECRET_PATH}", closed_port());
    let alerter = alerter(WebhookSink::new(url, WebhookFormat::Json).unwrap());
    alerter.send(Alert::error("Disk full"));
    flush(&alerter);

    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.failed, stats.queued), (0, 1, 0));
}

#[test]
fn extra_headers_are_sent() {
    use reqwest::header::{HeaderValue, AUTHORIZATION};
    let server = FakeHttp::start(Reply::text(200, ""));
    let sink = sink(&server, WebhookFormat::Json)
        .with_header(AUTHORIZATION, HeaderValue::from_static("Bearer t0ken"));
    assert!(!format!("{sink:?}").contains("t0ken"));
    let alerter = alerter(sink);
    alerter.send(Alert::error("Disk full"));
    flush(&alerter);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("authorization"), Some("Bearer t0ken"));
}

#[test]
fn from_env_builds_the_webhook_sink() {
    let server = FakeHttp::start(discord_ok());
    let url = format!("{}{SECRET_PATH}", server.url());
    let alerter = AlerterBuilder::from_lookup(|name| match name {
        "WATCHPOST_WEBHOOK_URL" => Some(url.clone().into()),
        "WATCHPOST_WEBHOOK_FORMAT" => Some(" Discord\n".into()),
        "WATCHPOST_SERVICE" => Some("checkout-api".into()),
        _ => None,
    })
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(alerter.sink_names().collect::<Vec<_>>(), ["discord"]);
    alerter.send(Alert::info("Deploy finished"));
    flush(&alerter);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].json()["content"]
        .as_str()
        .unwrap()
        .starts_with("**ℹ️ Deploy finished**"));

    let err = AlerterBuilder::from_lookup(|name| match name {
        "WATCHPOST_WEBHOOK_URL" => Some(url.clone().into()),
        "WATCHPOST_WEBHOOK_FORMAT" => Some("teams".into()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(err.name(), Some("WATCHPOST_WEBHOOK_FORMAT"));
    assert!(err.to_string().contains("json"), "{err}");
}

/// Collects everything logged, from every thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn the_webhook_url_never_leaks() {
    const SECRETS: [&str; 3] = ["B000/XXXX", "XXXX", "s3cr3t"];
    let assert_clean = |what: &str, text: &str| {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{what} leaks {secret:?}: {text}");
        }
    };

    // Logs, from the delivery thread too.
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Other tests in this binary may log here too; they must be clean as
    // well.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // Debug.
    let server = FakeHttp::start(Reply::text(400, "invalid_payload"));
    for format in [
        WebhookFormat::Json,
        WebhookFormat::Slack,
        WebhookFormat::Discord,
    ] {
        let sink = WebhookSink::new(
            format!("{}{SECRET_PATH}?token=s3cr3t", server.url()),
            format,
        )
        .unwrap();
        let debug = format!("{sink:?}");
        assert!(debug.contains("127.0.0.1"), "{debug}");
        assert_clean("Debug", &debug);
    }

    // Config errors.
    for url in [
        format!("ftp://hooks.example.com{SECRET_PATH}?token=s3cr3t"),
        format!("hooks.example.com{SECRET_PATH}?token=s3cr3t"),
        format!("https://[::1{SECRET_PATH}?token=s3cr3t"),
    ] {
        let err = WebhookSink::new(url, WebhookFormat::Slack).unwrap_err();
        assert_eq!(err.name(), Some("WATCHPOST_WEBHOOK_URL"));
        assert_clean("ConfigError", &err.to_string());
        assert_clean("ConfigError", &format!("{err:?}"));
    }
    let err = AlerterBuilder::from_lookup(|name| match name {
        "WATCHPOST_WEBHOOK_URL" => Some(format!("mailto:{SECRET_PATH}").into()),
        _ => None,
    })
    .unwrap_err();
    assert_clean("from_env error", &err.to_string());

    // Sink errors: refused, rejected, server error, rate limited.
    let refused = format!("http://127.0.0.1:{}{SECRET_PATH}", closed_port());
    let failing = FakeHttp::start(Reply::text(500, "oops"));
    failing.push(Reply::text(429, "rate_limited").header("Retry-After", "1"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = Notification::new(Alert::error("x"), Arc::new(ServiceInfo::new("api")))
        .with_kind(NotificationKind::Firing);
    let mut kinds = Vec::new();
    for url in [
        refused.clone(),
        format!("{}{SECRET_PATH}", server.url()),
        format!("{}{SECRET_PATH}", failing.url()),
        format!("{}{SECRET_PATH}", failing.url()),
    ] {
        let sink = WebhookSink::new(url, WebhookFormat::Slack).unwrap();
        let err = runtime.block_on(sink.deliver(&n)).unwrap_err();
        assert_clean("SinkError", &err.to_string());
        assert_clean("SinkError", &format!("{err:?}"));
        kinds.push(err.kind());
    }
    assert_eq!(
        kinds,
        [
            SinkErrorKind::Transient,
            SinkErrorKind::Rejected,
            SinkErrorKind::RateLimited {
                retry_after: Duration::from_secs(1)
            },
            SinkErrorKind::Transient,
        ]
    );

    // (Pooled connections belong to the runtime that opened them: stop
    // this one before the delivery threads reuse the client.)
    drop(runtime);

    // The delivery thread's own log lines.
    for url in [refused, format!("{}{SECRET_PATH}", server.url())] {
        let alerter = alerter(WebhookSink::new(url, WebhookFormat::Slack).unwrap());
        alerter.send(Alert::error("Disk full"));
        flush(&alerter);
        assert_eq!(alerter.stats().failed, 1);
    }
    let logged = logs.text();
    assert!(logged.contains("invalid_payload"), "{logged}");
    assert!(logged.contains("cannot connect"), "{logged}");
    assert_clean("logs", &logged);
}
