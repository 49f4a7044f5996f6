//! Run with: cargo run --example send_test_alert
//!
//! Sends one alert with the configuration from the environment and waits
//! for it to be delivered: a ten-second check of a Telegram (or webhook)
//! setup.
//!
//! ```sh
//! TELEGRAM_BOT_TOKEN=123456:ABC... TELEGRAM_CHAT_ID=123456789 \
//!     cargo run --example send_test_alert
//! ```
//!
//! Exits 0 once every sink accepted the alert, 1 if one refused it or it
//! could not be delivered within 15 seconds (the log says why: a wrong
//! token, a chat the bot isn't in, ...), 2 on a configuration error.

use std::process::ExitCode;
use std::time::Duration;

use watchpost::alert::{Alert, Alerter};

pub(crate) fn main() -> ExitCode {
    // Delivery failures are logged (never the token).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let alerter = match Alerter::from_env() {
        Ok(alerter) => alerter,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let sinks: Vec<&str> = alerter.sink_names().collect();
    println!("sending a test alert to: {}", sinks.join(", "));
    if sinks == ["log"] {
        println!("(no TELEGRAM_BOT_TOKEN/TELEGRAM_CHAT_ID or WATCHPOST_WEBHOOK_URL set: the log sink prints it)");
    }

    alerter.send(
        Alert::warning("watchpost test alert")
            .detail("If you can read this on your phone, alerts work.")
            .key("watchpost-test-alert"),
    );
    // At most one retry-after wait or a few backoff retries fit in here.
    let flushed = alerter.flush(Duration::from_secs(15));
    let stats = alerter.stats();
    if flushed && stats.failed == 0 && stats.sent == sinks.len() as u64 {
        println!("delivered");
        ExitCode::SUCCESS
    } else if !flushed {
        println!("not delivered within 15 s: is the API reachable from here?");
        ExitCode::from(1)
    } else {
        println!("not delivered: see the log above");
        ExitCode::from(1)
    }
}
