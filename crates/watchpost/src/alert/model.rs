//! The alert value and the service it comes from.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::panic::PanicReport;

/// How bad it is. Ordered: `Info < Warning < Error < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing, nobody needs to act (a deploy finished). Sinks that can
    /// deliver silently (Telegram) do.
    Info,
    /// Something degrades and needs a look today.
    Warning,
    /// Something is broken for some users.
    Error,
    /// Something is broken for everyone, or the process is dying (panics).
    Critical,
}

impl Severity {
    /// The lowercase name: `info`, `warning`, `error`, `critical`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }

    /// The emoji sinks put in front of the title, so the lock screen shows
    /// how bad it is before a word is read.
    pub const fn emoji(self) -> &'static str {
        match self {
            Self::Info => "ℹ️",
            Self::Warning => "⚠️",
            Self::Error => "🔴",
            Self::Critical => "🔥",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that isn't one of `info`, `warning`, `error`, `critical`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSeverityError(String);

impl fmt::Display for ParseSeverityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown severity {:?}, expected info, warning, error or critical",
            self.0
        )
    }
}

impl std::error::Error for ParseSeverityError {}

impl FromStr for Severity {
    type Err = ParseSeverityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(Self::Info),
            "warning" | "warn" => Ok(Self::Warning),
            "error" => Ok(Self::Error),
            "critical" | "crit" => Ok(Self::Critical),
            _ => Err(ParseSeverityError(s.to_owned())),
        }
    }
}

/// One alert: what broke, how badly, and anything that helps fix it.
///
/// Build it with the severity constructors and the consuming setters. The
/// service's name, environment, host and version are not part of the alert:
/// the [`Alerter`](super::Alerter) adds them from its configuration.
///
/// # Examples
///
/// ```
/// use watchpost::alert::{Alert, Severity};
///
/// let alert = Alert::error("Stripe webhook retry rate high")
///     .detail("42 retries/min on /webhooks/stripe")
///     .label("route", "/webhooks/stripe");
/// assert_eq!(alert.severity(), Severity::Error);
/// assert_eq!(alert.title(), "Stripe webhook retry rate high");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an alert does nothing until it is given to an Alerter"]
pub struct Alert {
    severity: Severity,
    title: String,
    detail: Option<String>,
    key: Option<String>,
    labels: Vec<(String, String)>,
    /// Set by the panic hook; shared, so cloning an alert stays cheap.
    panic: Option<Arc<PanicReport>>,
}

impl Alert {
    /// An alert with this severity and title. The title is the first line
    /// of the message (what a phone's lock screen shows): keep it short and
    /// specific.
    pub fn new(severity: Severity, title: impl Into<String>) -> Self {
        Self {
            severity,
            title: title.into(),
            detail: None,
            key: None,
            labels: Vec::new(),
            panic: None,
        }
    }

    /// An [`Info`](Severity::Info) alert.
    pub fn info(title: impl Into<String>) -> Self {
        Self::new(Severity::Info, title)
    }

    /// A [`Warning`](Severity::Warning) alert.
    pub fn warning(title: impl Into<String>) -> Self {
        Self::new(Severity::Warning, title)
    }

    /// An [`Error`](Severity::Error) alert.
    pub fn error(title: impl Into<String>) -> Self {
        Self::new(Severity::Error, title)
    }

    /// A [`Critical`](Severity::Critical) alert.
    pub fn critical(title: impl Into<String>) -> Self {
        Self::new(Severity::Critical, title)
    }

    /// The body under the title: the error text, a stack trace, the numbers.
    /// Sinks with a length limit cut it (never the title) and say so.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The dedupe key. Without one, the key is a fingerprint of the title
    /// with numbers, hex ids and UUIDs normalised (see
    /// [`fingerprint`](super::fingerprint)), so "timeout after 1012 ms" and
    /// "timeout after 987 ms" are one alert.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a label (`route=/checkout`, `tenant=acme`). Labels show in the
    /// message and become Alertmanager labels; a label set twice keeps the
    /// last value.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        let value = value.into();
        match self.labels.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.labels.push((name, value)),
        }
        self
    }

    /// Replaces the severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// The severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The detail, if any.
    pub fn detail_text(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The explicit dedupe key, if one was set.
    pub fn explicit_key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The labels, in the order they were first set.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The panic this alert reports, in structured form, when the panic
    /// hook (or [`Panicked::report`](crate::panic::Panicked::report)) made
    /// it: what the Sentry sink turns into an exception with a stack trace.
    /// `None` for every other alert.
    pub fn panic_report(&self) -> Option<&PanicReport> {
        self.panic.as_deref()
    }

    /// Attaches the structured panic (the panic hook's alerts only).
    pub(crate) fn with_panic_report(mut self, report: PanicReport) -> Self {
        self.panic = Some(Arc::new(report));
        self
    }

    /// The key dedupe uses: the explicit key, or the title's fingerprint.
    pub fn dedupe_key(&self) -> Cow<'_, str> {
        match &self.key {
            Some(key) => Cow::Borrowed(key),
            None => Cow::Owned(super::fingerprint(&self.title)),
        }
    }
}

/// Where alerts come from: shown in every message, so one chat can serve
/// several services.
///
/// The [`Alerter`](super::Alerter) fills it from its builder or from
/// `WATCHPOST_SERVICE`, `WATCHPOST_ENV` and `WATCHPOST_VERSION`; the host
/// defaults to the machine's host name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// The service's name (`checkout-api`).
    pub name: String,
    /// The environment (`production`, `staging`), if set.
    pub environment: Option<String>,
    /// The host (or pod) name.
    pub host: String,
    /// The running version, if set.
    pub version: Option<String>,
}

impl ServiceInfo {
    /// Service info with this name, no environment or version, and the
    /// machine's host name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            environment: None,
            host: hostname(),
            version: None,
        }
    }
}

impl Default for ServiceInfo {
    fn default() -> Self {
        Self::new("app")
    }
}

/// The machine's host name: `HOSTNAME`, else the kernel's, else `unknown`.
pub(crate) fn hostname() -> String {
    let from_env = std::env::var("HOSTNAME").ok();
    let from_kernel = || {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
    };
    from_env
        .or_else(from_kernel)
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_first_position_and_last_value() {
        let alert = Alert::info("t")
            .label("a", "1")
            .label("b", "2")
            .label("a", "3");
        let labels: Vec<_> = alert.labels().collect();
        assert_eq!(labels, [("a", "3"), ("b", "2")]);
    }

    #[test]
    fn severity_parses_its_names() {
        for s in [
            Severity::Info,
            Severity::Warning,
            Severity::Error,
            Severity::Critical,
        ] {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        }
        assert!("fatal".parse::<Severity>().is_err());
    }

    #[test]
    fn explicit_key_wins_over_fingerprint() {
        assert_eq!(Alert::info("x 1").key("k").dedupe_key(), "k");
        assert_eq!(
            Alert::info("x 1").dedupe_key(),
            Alert::info("x 2").dedupe_key()
        );
    }
}
