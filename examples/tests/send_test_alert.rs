//! `cargo run --example send_test_alert` against a fake Telegram Bot API:
//! one message, exit 0; a wrong token, exit 1 with a clear log line and no
//! token in it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::process::{Command, Output};

use watchpost_testkit::fake_http::{telegram_error, telegram_ok, FakeHttp};

const TOKEN: &str = "123456:SECRET-test-alert-token";

fn run(telegram: &FakeHttp) -> Output {
    Command::new(env!("CARGO_BIN_EXE_send-test-alert-e2e"))
        .env_remove("WATCHPOST_WEBHOOK_URL")
        .env_remove("WATCHPOST_WEBHOOK_FORMAT")
        .env_remove("WATCHPOST_SENTRY_DSN")
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("TELEGRAM_CHAT_ID", " 42\n")
        .env("WATCHPOST_TELEGRAM_API_URL", telegram.url())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn one_test_alert_is_delivered() {
    let telegram = FakeHttp::start(telegram_ok());
    let output = run(&telegram);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("delivered"), "{printed}");
    let requests = telegram.requests();
    assert_eq!(requests.len(), 1);
    let message = requests[0].json();
    assert_eq!(message["chat_id"], 42);
    assert!(message["text"]
        .as_str()
        .unwrap()
        .contains("watchpost test alert"));
    assert!(!printed.contains("SECRET-test-alert-token"), "{printed}");
}

#[test]
fn a_wrong_token_fails_clearly() {
    let telegram = FakeHttp::start(telegram_error(401, "Unauthorized", None));
    let output = run(&telegram);
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(printed.contains("TELEGRAM_BOT_TOKEN"), "{printed}");
    assert!(!printed.contains("SECRET-test-alert-token"), "{printed}");
    assert_eq!(telegram.requests().len(), 1, "a 401 is not retried");
}
