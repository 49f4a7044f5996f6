use std::fmt;

use crate::alert::model::Severity;
use crate::alert::notification::Notification;
use crate::alert::sink::{DeliverFuture, Sink};

/// Writes alerts to the log: a `tracing` event (target `watchpost::alert`)
/// at `INFO` for info, `WARN` for warnings and `ERROR` above, or straight
/// to stderr when no tracing subscriber is installed.
///
/// The [`Alerter`](crate::alert::Alerter) uses it when no other sink is
/// configured, so development needs no setup.
///
/// # Examples
///
/// ```
/// use watchpost::alert::{Alerter, LogSink};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Telegram for the phone, and the log as a record.
/// let alerter = Alerter::builder().sink(LogSink::new()).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct LogSink {
    _private: (),
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogSink")
    }
}

impl LogSink {
    /// A log sink.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The target the log sink writes to.
pub(crate) const TARGET: &str = "watchpost::alert";

impl Sink for LogSink {
    fn name(&self) -> &str {
        "log"
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a> {
        if !tracing::dispatcher::has_been_set() {
            eprintln!(
                "[watchpost alert] {}",
                n.to_plain_text().replace('\n', "\n    ")
            );
            return Box::pin(async { Ok(()) });
        }
        let headline = n.headline();
        let context = n.context_line();
        let detail = n.alert().detail_text().unwrap_or("");
        let labels = n.labels_line().unwrap_or_default();
        let similar = n.similar();
        let key = n.key();
        let duration = n.duration_line().unwrap_or_default();
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: TARGET,
                    $level,
                    key,
                    context = %context,
                    detail,
                    labels = %labels,
                    similar,
                    duration = %duration,
                    "{headline}"
                )
            };
        }
        match n.alert().severity() {
            Severity::Info => event!(tracing::Level::INFO),
            Severity::Warning => event!(tracing::Level::WARN),
            Severity::Error | Severity::Critical => event!(tracing::Level::ERROR),
        }
        Box::pin(async { Ok(()) })
    }
}
