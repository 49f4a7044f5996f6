//! Where alerts go: the [`Sink`] trait and how a sink reports failure.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::notification::Notification;

/// The future [`Sink::deliver`] returns.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A destination for alerts: Telegram, a webhook, the log, your own.
///
/// The [`Alerter`](super::Alerter)'s delivery thread calls
/// [`deliver`](Self::deliver) once per attempt, on its own Tokio runtime
/// (current-thread, with time and I/O), one notification at a time per sink
/// and paced by [`pacing`](Self::pacing). Retries, backoff, `Retry-After`
/// waits, the attempt timeout and failure logging are the worker's job: a
/// sink makes one attempt and says how it went with a [`SinkError`].
///
/// Error messages are logged: they must never contain a token or a secret
/// URL (strip reqwest errors with `without_url()`).
///
/// # Examples
///
/// ```
/// use watchpost::alert::{DeliverFuture, Notification, Sink};
///
/// #[derive(Debug)]
/// struct Stderr;
///
/// impl Sink for Stderr {
///     fn name(&self) -> &str {
///         "stderr"
///     }
///
///     fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a> {
///         Box::pin(async move {
///             eprintln!("{}", n.to_plain_text());
///             Ok(())
///         })
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = watchpost::alert::Alerter::builder().sink(Stderr).build()?;
/// # Ok(()) }
/// ```
pub trait Sink: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and stats (`telegram`, `slack`, `discord`,
    /// `webhook`, `log`).
    fn name(&self) -> &str;

    /// How fast this sink may be called. Default: no limit.
    fn pacing(&self) -> Pacing {
        Pacing::NONE
    }

    /// How long an alert may wait for this sink (while it is down or
    /// rate-limited) before it is given up and reported. Default: the
    /// alerter's [`max_age`](super::AlerterBuilder::max_age), 10 minutes.
    fn max_age(&self) -> Option<Duration> {
        None
    }

    /// Makes one delivery attempt.
    fn deliver<'a>(&'a self, notification: &'a Notification) -> DeliverFuture<'a>;

    /// This sink, keeping an undelivered alert for `age` instead of the
    /// alerter's [`max_age`](super::AlerterBuilder::max_age).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use watchpost::alert::{Alerter, LogSink, Sink};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A pager that must not ring about what happened an hour ago.
    /// let alerter = Alerter::builder()
    ///     .sink(LogSink::new().with_max_age(Duration::from_secs(120)))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    fn with_max_age(self, age: Duration) -> WithMaxAge<Self>
    where
        Self: Sized,
    {
        WithMaxAge { sink: self, age }
    }
}

/// A sink with its own max age, from [`Sink::with_max_age`].
#[derive(Debug)]
pub struct WithMaxAge<S> {
    sink: S,
    age: Duration,
}

impl<S: Sink> Sink for WithMaxAge<S> {
    fn name(&self) -> &str {
        self.sink.name()
    }

    fn pacing(&self) -> Pacing {
        self.sink.pacing()
    }

    fn max_age(&self) -> Option<Duration> {
        Some(self.age)
    }

    fn deliver<'a>(&'a self, notification: &'a Notification) -> DeliverFuture<'a> {
        self.sink.deliver(notification)
    }
}

/// The rate a sink's API accepts, enforced by the delivery worker.
/// Notifications waiting for their turn stay queued; none is dropped for
/// pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The least time between two deliveries.
    pub min_interval: Duration,
    /// At most this many deliveries in any 60 seconds.
    pub per_minute: Option<u32>,
}

impl Pacing {
    /// No limit.
    pub const NONE: Self = Self {
        min_interval: Duration::ZERO,
        per_minute: None,
    };

    /// At most one delivery per `interval`.
    pub const fn every(interval: Duration) -> Self {
        Self {
            min_interval: interval,
            per_minute: None,
        }
    }

    /// Adds a per-minute cap.
    #[must_use]
    pub const fn per_minute(mut self, n: u32) -> Self {
        self.per_minute = Some(n);
        self
    }
}

/// Why one delivery attempt failed, and so what the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkErrorKind {
    /// The API said to slow down: wait `retry_after`, then retry. Does not
    /// count as a failed attempt.
    RateLimited {
        /// How long the API asked to wait.
        retry_after: Duration,
    },
    /// A 5xx, a timeout, a refused connection: the sink is down; it is
    /// probed again with backoff until the alert's max age.
    Transient,
    /// The API refused this message (400, 403, 404): not retried.
    Rejected,
    /// The sink can never work as configured (a wrong token): it is
    /// switched off for the life of the process.
    Disabled,
}

/// A failed delivery attempt. Its message is logged, so it must not
/// contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    kind: SinkErrorKind,
    message: String,
}

impl SinkError {
    /// An error of this kind.
    pub fn new(kind: SinkErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The API asked to wait `retry_after`.
    pub fn rate_limited(retry_after: Duration, message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::RateLimited { retry_after }, message)
    }

    /// Worth retrying later.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Transient, message)
    }

    /// Refused; retrying won't help.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Rejected, message)
    }

    /// The sink can't ever work as configured.
    pub fn disabled(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Disabled, message)
    }

    /// What kind of failure.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SinkError {}
