//! Alerts that reach a phone within seconds, once per incident, and never
//! hurt the application.
//!
//! - **Never blocks, never fails the caller.** [`Alerter::send`] is
//!   synchronous and cheap: it decides dedupe on the caller's thread and
//!   queues what passes for the delivery thread, which runs its own
//!   runtime. Nothing it does can panic, block on I/O or return an error
//!   you must handle.
//! - **Deduplicated.** Alerts with the same key (explicit, or a
//!   [`fingerprint`] of the title with numbers, hex ids and UUIDs
//!   normalised) inside a window (default 5 minutes) are suppressed and
//!   counted; the next one delivered says `(+N similar in the last 5m)`. A
//!   retry loop raising the same error 800 times in ten minutes sends two
//!   or three messages.
//! - **Incidents.** [`Alerter::fire`] and [`Alerter::resolve`] send one
//!   "firing" and one "resolved" message (with how long it lasted) per
//!   incident, whatever the number of `fire` calls in between.
//! - **Sinks.** Telegram ([`TelegramSink`]), webhooks in Alertmanager,
//!   Slack or Discord format ([`WebhookSink`]), Sentry or GlitchTip
//!   (`SentrySink`, with the `sentry` feature), the log ([`LogSink`], the
//!   default when nothing is configured), or your own [`Sink`]. Several at
//!   once, each paced and retried on its own.
//! - **Survives the sink.** 429s are waited out as the API asks; 5xx,
//!   timeouts and refused connections are retried with exponential backoff
//!   and jitter, for a bounded number of attempts and age; 4xx are not
//!   retried; a wrong Telegram token switches that sink off with one log
//!   line. Failures are counted in [`Stats`] and logged at most once per
//!   sink per minute, never alerted about (that would loop).
//! - **Panics and events.** [`panic::install`](crate::panic::install)
//!   reports panics before the process dies; with the `tracing-layer`
//!   feature, `AlertLayer` turns `ERROR` events into alerts, deduplicated
//!   by call site.
//! - **No leaked secrets.** Bot tokens and webhook URLs never appear in a
//!   `Debug` print, an error or a log line.
//!
//! # Delivery guarantees
//!
//! Delivery is **at least once** per sink: an attempt that times out after
//! the API accepted the message is retried, and the message may arrive
//! twice. It is not guaranteed beyond that: a full queue drops its oldest
//! alert (counted in [`Stats::dropped`]), and an alert still failing after
//! its attempts or its maximum age is given up (counted in
//! [`Stats::failed`] and logged). Queued alerts live in memory: call
//! [`Alerter::flush`] before the process exits.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use watchpost::alert::{Alert, Alerter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // TELEGRAM_BOT_TOKEN + TELEGRAM_CHAT_ID, WATCHPOST_WEBHOOK_URL, ...;
//! // with nothing set, alerts go to the log.
//! let alerter = Alerter::from_env()?;
//!
//! alerter.send(Alert::error("Stripe webhook retry rate high").detail("42 retries/min"));
//! alerter.fire("queue-depth", Alert::warning("Queue depth 1200")); // once per incident
//! alerter.resolve("queue-depth");                                  // "resolved" message
//! alerter.flush(Duration::from_secs(3));                           // on shutdown
//! # Ok(()) }
//! ```

mod alerter;
mod env;
mod fingerprint;
mod gate;
mod lane;
mod model;
mod notification;
mod outbox;
mod sink;
mod sinks;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
#[cfg(feature = "tracing-layer")]
mod tracing_layer;
pub(crate) mod worker;

pub use self::alerter::{Alerter, AlerterBuilder, Stats, WeakAlerter};
pub use self::env::ConfigError;
pub use self::fingerprint::fingerprint;
pub use self::lane::{GiveUpReason, GiveUps, SinkStats};
pub use self::model::{Alert, ParseSeverityError, ServiceInfo, Severity};
pub use self::notification::{format_duration, Notification, NotificationKind};
pub use self::outbox::{OutboxRecord, OUTBOX_LEASE};
pub use self::sink::{DeliverFuture, Pacing, Sink, SinkError, SinkErrorKind, WithMaxAge};
pub use self::sinks::LogSink;
#[cfg(feature = "test-util")]
pub use self::sinks::MemorySink;
#[cfg(feature = "sentry")]
pub use self::sinks::{Dsn, ParseDsnError, SentrySink};
#[cfg(feature = "webhook")]
pub use self::sinks::{ParseWebhookFormatError, WebhookFormat, WebhookSink};
#[cfg(feature = "telegram")]
pub use self::sinks::{TelegramSink, TelegramSinkBuilder};
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStore;
pub use self::store::{AlertStore, Claim, MemoryStore, StoreError, StoreFuture};
#[cfg(feature = "tracing-layer")]
pub use self::tracing_layer::AlertLayer;
