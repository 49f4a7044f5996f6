//! The built-in sinks.

#[cfg(any(feature = "telegram", feature = "webhook", feature = "sentry"))]
mod http;
mod log;
#[cfg(feature = "test-util")]
mod memory;
#[cfg(feature = "sentry")]
mod sentry;
#[cfg(feature = "telegram")]
mod telegram;
#[cfg(feature = "webhook")]
mod webhook;

pub use self::log::LogSink;
#[cfg(feature = "test-util")]
pub use self::memory::MemorySink;
#[cfg(feature = "sentry")]
pub use self::sentry::{Dsn, ParseDsnError, SentrySink};
#[cfg(feature = "telegram")]
pub use self::telegram::{TelegramSink, TelegramSinkBuilder};
#[cfg(feature = "webhook")]
pub use self::webhook::{ParseWebhookFormatError, WebhookFormat, WebhookSink};
