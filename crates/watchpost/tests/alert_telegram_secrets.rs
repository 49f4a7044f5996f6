//! The bot token never shows: not in a log line (at any level, on any
//! thread), a `Debug` print, or a configuration error, whatever fails.
#![cfg(feature = "telegram")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use watchpost::alert::{Alert, Alerter, ConfigError, TelegramSink, TelegramSinkBuilder};
use watchpost_testkit::fake_http::{closed_port, telegram_error, telegram_ok, FakeHttp, Reply};
use watchpost_testkit::logs::{capture_global, captured};

const TOKEN: &str = "123456:SECRET-TOKEN-abcdef";
const SECRET: &str = "SECRET-TOKEN-abcdef";

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(TOKEN), "{what} shows the token: {text}");
    assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
    assert!(!text.contains("123456:"), "{what} shows the bot id: {text}");
}

/// Sends one alert through a Telegram sink built from `builder`, checks
/// every Debug print and the whole log, and returns the log.
fn run(builder: TelegramSinkBuilder, alert: Alert, timeout: Option<Duration>) -> String {
    capture_global();
    let sink = builder.build().unwrap();
    assert_clean("Debug of the sink", &format!("{sink:?}"));
    let mut alerter = Alerter::builder()
        .sink(sink)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .max_attempts(2);
    if let Some(timeout) = timeout {
        alerter = alerter.attempt_timeout(timeout);
    }
    assert_clean("Debug of the builder", &format!("{alerter:?}"));
    let alerter = alerter.build().unwrap();
    alerter.send(alert);
    assert!(alerter.flush(Duration::from_secs(30)));
    assert_clean("Debug of the alerter", &format!("{alerter:?}"));
    let logs = captured();
    assert_clean("the logs", &logs);
    logs
}

fn against(server: &FakeHttp) -> TelegramSinkBuilder {
    TelegramSink::builder(TOKEN, "-4242").api_url(server.url())
}

fn assert_logged(logs: &str, message: &str) {
    assert!(
        logs.contains(message),
        "expected {message:?} in the logs:\n{logs}"
    );
}

#[test]
fn rate_limited() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_error(
        429,
        "Too Many Requests: retry after 1",
        Some(json!({"retry_after": 1})),
    ));
    let logs = run(against(&server), Alert::error("rate limited"), None);
    assert_logged(&logs, "HTTP 429: Too Many Requests: retry after 1");
}

#[test]
fn server_errors_until_given_up() {
    let server = FakeHttp::start(telegram_error(502, "Bad Gateway", None));
    let logs = run(against(&server), Alert::error("5xx"), None);
    // The worker logs a sink's failures once a minute: the retry's line.
    assert_logged(&logs, "HTTP 502: Bad Gateway");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn timeout() {
    let server = FakeHttp::start(telegram_ok().delay(Duration::from_secs(3)));
    let logs = run(
        against(&server),
        Alert::error("timeout"),
        Some(Duration::from_millis(200)),
    );
    assert_logged(&logs, "no answer within 200ms");
}

#[test]
fn connection_refused() {
    let builder =
        TelegramSink::builder(TOKEN, "42").api_url(format!("http://127.0.0.1:{}", closed_port()));
    let logs = run(builder, Alert::error("refused"), None);
    assert_logged(&logs, "cannot connect");
}

#[test]
fn chat_not_found() {
    let server = FakeHttp::start(telegram_error(400, "Bad Request: chat not found", None));
    let logs = run(against(&server), Alert::error("chat not found"), None);
    assert_logged(&logs, "HTTP 400: Bad Request: chat not found");
}

#[test]
fn wrong_token() {
    let server = FakeHttp::start(telegram_error(401, "Unauthorized", None));
    let logs = run(against(&server), Alert::error("401"), None);
    assert_logged(&logs, "Telegram rejected the bot token (401 Unauthorized)");
}

#[test]
fn malformed_token() {
    let server = FakeHttp::start(telegram_error(404, "Not Found", None));
    let logs = run(against(&server), Alert::error("404"), None);
    assert_logged(&logs, "Telegram answered 404 Not Found for this bot");
}

#[test]
fn blocked() {
    let server = FakeHttp::start(telegram_error(
        403,
        "Forbidden: bot was blocked by the user",
        None,
    ));
    let logs = run(against(&server), Alert::error("403"), None);
    assert_logged(&logs, "HTTP 403: Forbidden: bot was blocked by the user");
}

#[test]
fn unparsable_entities() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_error(
        400,
        "Bad Request: can't parse entities: Unsupported start tag",
        None,
    ));
    let logs = run(against(&server), Alert::error("parse"), None);
    assert_logged(&logs, "can't parse entities: Unsupported start tag");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn migrated_group() {
    let server = FakeHttp::start(telegram_ok());
    server.push(telegram_error(
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        Some(json!({"migrate_to_chat_id": -1_009_876_543_210_i64})),
    ));
    let logs = run(against(&server), Alert::error("migrate"), None);
    assert_logged(&logs, "upgraded to a supergroup with id -1009876543210");
    assert_logged(&logs, "update TELEGRAM_CHAT_ID to -1009876543210");
}

#[test]
fn an_api_echoing_the_url_is_scrubbed() {
    // A proxy or a broken local Bot API server quoting the request line.
    let path = format!("/bot{TOKEN}/sendMessage");
    let server = FakeHttp::start(telegram_error(
        400,
        &format!("Bad Request: no route for POST {path}"),
        None,
    ));
    let logs = run(against(&server), Alert::error("echo 400"), None);
    assert_logged(&logs, "no route for POST /bot[redacted]/sendMessage");

    let server = FakeHttp::start(telegram_ok());
    server.push(Reply::text(503, &format!("upstream failed for {path}")));
    let logs = run(against(&server), Alert::error("echo 503"), None);
    assert_logged(&logs, "upstream failed for /bot[redacted]/sendMessage");
}

#[test]
fn config_errors_never_quote_the_token() {
    capture_global();
    let cases: Vec<(TelegramSinkBuilder, &str)> = vec![
        (
            TelegramSink::builder(format!("{TOKEN}\n"), "42"),
            "TELEGRAM_BOT_TOKEN",
        ),
        (
            TelegramSink::builder(format!(" {TOKEN}"), "42"),
            "TELEGRAM_BOT_TOKEN",
        ),
        (TelegramSink::builder(SECRET, "42"), "TELEGRAM_BOT_TOKEN"),
        (
            TelegramSink::builder(format!("{TOKEN}/x"), "42"),
            "TELEGRAM_BOT_TOKEN",
        ),
        (
            TelegramSink::builder(format!("bot{TOKEN}"), "42"),
            "TELEGRAM_BOT_TOKEN",
        ),
        // Pasted into the wrong variable.
        (TelegramSink::builder(TOKEN, TOKEN), "TELEGRAM_CHAT_ID"),
        (
            TelegramSink::builder(TOKEN, "42").api_url(TOKEN),
            "WATCHPOST_TELEGRAM_API_URL",
        ),
        (
            TelegramSink::builder(TOKEN, "42").api_url(format!("ftp://x/{TOKEN}")),
            "WATCHPOST_TELEGRAM_API_URL",
        ),
        (
            TelegramSink::builder(TOKEN, "42").api_url(format!("https://x/?t={TOKEN}")),
            "WATCHPOST_TELEGRAM_API_URL",
        ),
    ];
    for (builder, name) in cases {
        assert_clean("Debug of the builder", &format!("{builder:?}"));
        let err: ConfigError = builder.build().unwrap_err();
        assert_eq!(err.name(), Some(name), "{err}");
        assert_clean("the error's Display", &err.to_string());
        assert_clean("the error's Debug", &format!("{err:?}"));
    }
    assert_clean("the logs", &captured());
}
