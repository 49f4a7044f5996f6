//! The fake Telegram the README suggests for trying alerts without a bot:
//! `send_test_alert` pointed at it is delivered and printed, once; its
//! error modes make `send_test_alert` fail the way a real Telegram would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

mod common;

use common::{run_to_exit, wait_until, Server, TOKEN};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-telegram-e2e");
const SEND: &str = env!("CARGO_BIN_EXE_send-test-alert-e2e");

fn send_test_alert(fake: &Server) -> (bool, String) {
    let (status, output) = run_to_exit(
        SEND,
        &[
            ("TELEGRAM_BOT_TOKEN", TOKEN.to_owned()),
            ("TELEGRAM_CHAT_ID", "42".to_owned()),
            (
                "WATCHPOST_TELEGRAM_API_URL",
                format!("http://127.0.0.1:{}", fake.port),
            ),
        ],
    );
    (status.success(), output)
}

#[test]
fn a_test_alert_is_delivered_and_printed_once() {
    let fake = Server::start(FAKE, &[]);
    let (delivered, output) = send_test_alert(&fake);
    assert!(delivered, "{output}");
    assert!(
        wait_until(|| fake.output().contains("── message 1 to chat 42 ──")),
        "{}",
        fake.output()
    );
    let printed = fake.output();
    assert!(!printed.contains("message 2"), "{printed}");
    assert!(!printed.contains(TOKEN) && !output.contains(TOKEN));
}

#[test]
fn its_error_modes_fail_a_test_alert() {
    for code in ["401", "400"] {
        let fake = Server::start(FAKE, &[("FAKE_TELEGRAM_FAIL", code.to_owned())]);
        let (delivered, output) = send_test_alert(&fake);
        assert!(!delivered, "{code}: {output}");
        assert!(!fake.output().contains("── message"), "{code}");
    }
}

#[test]
fn a_bad_setting_is_a_clear_startup_error() {
    let (status, output) = run_to_exit(FAKE, &[("FAKE_TELEGRAM_FAIL", "teapot".to_owned())]);
    assert!(!status.success());
    assert!(output.contains("FAKE_TELEGRAM_FAIL"), "{output}");
}
