//! Run with: cargo run --example webhook_alerts
//!
//! Alerts to Slack and Discord through their incoming webhooks, with the
//! alerter built in code. Sends three messages to each webhook (an alert,
//! then an incident firing and resolved), waits for them, and says what
//! was delivered.
//!
//! ```sh
//! SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T000/B000/XXXX \
//! DISCORD_WEBHOOK_URL=https://discord.com/api/webhooks/123/abc \
//!     cargo run --example webhook_alerts
//! ```
//!
//! - `SLACK_WEBHOOK_URL`: a Slack incoming webhook (api.slack.com/apps:
//!   your app, *Incoming Webhooks*, *Add New Webhook to Workspace*).
//! - `DISCORD_WEBHOOK_URL`: a Discord channel webhook (channel settings,
//!   *Integrations*, *Webhooks*, *New Webhook*, *Copy Webhook URL*).
//! - Set one or both. `WATCHPOST_SERVICE` and `WATCHPOST_ENV` name the
//!   service and environment in the messages, as for `Alerter::from_env`.
//!
//! A webhook URL is a credential: whoever has it can post to your channel.
//! This program never prints it, and watchpost never logs it (only its
//! scheme and host).
//!
//! One webhook needs no code in a service: `Alerter::from_env()` reads
//! `WATCHPOST_WEBHOOK_URL` and `WATCHPOST_WEBHOOK_FORMAT` (`slack`,
//! `discord` or `json`; guessed from the URL's host when unset). Build the
//! sinks in code, as here, for two webhooks at once or for a URL that comes
//! from a secret store.
//!
//! Exits 0 once every message reached every webhook; 1 if a webhook
//! refused one or did not answer in time (the log says why: a revoked
//! webhook, a deleted channel, ...); 2 on a configuration error.

use std::process::ExitCode;
use std::time::Duration;

use watchpost::alert::{Alert, Alerter, ConfigError, WebhookFormat, WebhookSink};

/// Messages sent to each webhook: one alert, an incident's firing and
/// resolved messages.
const MESSAGES: u64 = 3;

pub(crate) fn main() -> ExitCode {
    // Delivery failures are logged here, with the webhook's own words.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let alerter = match build_alerter() {
        Ok(alerter) => alerter,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Sink names ("slack", "discord"), never their URLs.
    let sinks: Vec<&str> = alerter.sink_names().collect();
    println!("sending to: {}", sinks.join(", "));

    // A one-off alert. Another with the same title within five minutes
    // would be counted, not sent.
    alerter.send(
        Alert::warning("Stripe webhook retry rate high")
            .detail("42 retries in the last minute\nendpoint: /webhooks/stripe")
            .label("queue", "stripe"),
    );
    println!("  alert: Stripe webhook retry rate high");

    // An incident: whatever the number of `fire` calls while it is open
    // (a check failing on every run), one message when it starts...
    for depth in [1200, 1450, 1800] {
        alerter.fire(
            "queue-depth",
            Alert::error(format!("Queue depth {depth}"))
                .detail("emails waiting to be sent; fires above 1000"),
        );
    }
    println!("  incident queue-depth: firing (3 fire calls, 1 message)");
    // ...and one when it is over, saying how long it lasted.
    alerter.resolve("queue-depth");
    println!("  incident queue-depth: resolved");

    // Slack takes one message a second per webhook, Discord too: the
    // delivery thread paces them. Wait for it, within a bound.
    let flushed = alerter.flush(Duration::from_secs(20));
    let stats = alerter.stats();
    let expected = MESSAGES * sinks.len() as u64;
    if flushed && stats.failed == 0 && stats.sent == expected {
        println!(
            "delivered: {MESSAGES} messages to each of {} ({} repeated fire calls suppressed)",
            sinks.join(", "),
            stats.suppressed
        );
        ExitCode::SUCCESS
    } else if !flushed {
        println!("not delivered within 20 s: is the webhook reachable from here?");
        ExitCode::from(1)
    } else {
        println!(
            "not delivered: {} of {expected} deliveries failed; the log says why",
            stats.failed
        );
        ExitCode::from(1)
    }
}

/// The alerter, with a sink per webhook URL set.
fn build_alerter() -> Result<Alerter, String> {
    let mut builder = Alerter::builder()
        // A one-shot check gives up sooner than a service should (which
        // keeps an alert for 10 minutes while its sink is down): a webhook
        // answering 5xx fails this run in 5 seconds, not minutes.
        .max_age(Duration::from_secs(5))
        .backoff(Duration::from_millis(250), Duration::from_secs(1));
    if let Some(name) = var("WATCHPOST_SERVICE") {
        builder = builder.service(name);
    }
    if let Some(env) = var("WATCHPOST_ENV") {
        builder = builder.environment(env);
    }

    let mut webhooks = 0;
    // The format is the sink's: Slack's `{"text": ...}` in mrkdwn, Discord's
    // `{"content": ...}` with mentions disabled (an alert quoting
    // `@everyone` pings nobody).
    for (name, format) in [
        ("SLACK_WEBHOOK_URL", WebhookFormat::Slack),
        ("DISCORD_WEBHOOK_URL", WebhookFormat::Discord),
    ] {
        if let Some(url) = var(name) {
            builder = builder.sink(webhook(name, &url, format)?);
            webhooks += 1;
        }
    }
    if webhooks == 0 {
        return Err("set SLACK_WEBHOOK_URL or DISCORD_WEBHOOK_URL (or both)".to_owned());
    }
    builder.build().map_err(|e| e.to_string())
}

/// A webhook sink for the URL in variable `name`. Errors never quote the URL.
fn webhook(name: &str, url: &str, format: WebhookFormat) -> Result<WebhookSink, String> {
    WebhookSink::new(url, format).map_err(|e| match e {
        // `WebhookSink::new` names WATCHPOST_WEBHOOK_URL in its errors (the
        // variable `from_env` reads); name the one this URL came from.
        ConfigError::Invalid { reason, .. } => format!("invalid {name}: {reason}"),
        other => format!("{name}: {other}"),
    })
}

/// An environment variable, trimmed (a URL pasted with a trailing newline
/// still works), if set to something other than blanks.
fn var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}
