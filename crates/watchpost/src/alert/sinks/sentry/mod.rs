//! The Sentry sink: alerts as events, in envelopes, posted to a DSN's
//! project (Sentry, GlitchTip, or any server speaking the envelope
//! protocol).
//!
//! A DSN's public key is a secret here: it never appears in a `Debug`
//! print, an error or a log line. Only the scheme, host and project do.

mod event;

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;

use super::http;
use crate::alert::env::ConfigError;
use crate::alert::notification::{format_duration, Notification};
use crate::alert::sink::{DeliverFuture, Pacing, Sink, SinkError};
use crate::alert::worker::LOG_TARGET;

/// The variable [`SentrySink::from_dsn_str`]'s errors name.
const DSN_VAR: &str = "WATCHPOST_SENTRY_DSN";

/// What the sink says it is, in `X-Sentry-Auth`.
const CLIENT: &str = concat!("watchpost/", env!("CARGO_PKG_VERSION"));

/// The envelope's content type.
const ENVELOPE_TYPE: &str = "application/x-sentry-envelope";

static SENTRY_AUTH: HeaderName = HeaderName::from_static("x-sentry-auth");
static SENTRY_RATE_LIMITS: HeaderName = HeaderName::from_static("x-sentry-rate-limits");

/// How long to wait after a 429 that says nothing about it, as Sentry's
/// SDK guidelines ask.
const DEFAULT_RATE_LIMIT: Duration = Duration::from_secs(60);

/// A Sentry DSN (`https://PUBLIC_KEY@o0.ingest.sentry.io/PROJECT_ID`): where
/// a [`SentrySink`] posts, and the key it posts with.
///
/// The public key (and the legacy secret key, if the DSN has one) is
/// treated as a secret: `Display` and `Debug` show `[redacted]` in its
/// place, and a [`ParseDsnError`] never quotes the value.
///
/// # Examples
///
/// ```
/// use watchpost::alert::Dsn;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dsn: Dsn = "https://0123456789abcdef@o42.ingest.sentry.io/4505".parse()?;
/// assert_eq!(dsn.host(), "o42.ingest.sentry.io");
/// assert_eq!(dsn.project_id(), "4505");
/// assert_eq!(dsn.envelope_url(), "https://o42.ingest.sentry.io/api/4505/envelope/");
/// assert_eq!(dsn.to_string(), "https://[redacted]@o42.ingest.sentry.io/4505");
/// assert!(!format!("{dsn:?}").contains("0123456789abcdef"));
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    scheme: &'static str,
    host: String,
    /// `None`: the scheme's default.
    port: Option<u16>,
    /// `/`, or `/prefix/` for a server under a path.
    path: String,
    project_id: String,
    /// `{scheme}://{host}[:{port}]{path}api/{project_id}/envelope/`.
    endpoint: reqwest::Url,
    /// The `X-Sentry-Auth` value, marked sensitive: it holds the key.
    auth: HeaderValue,
    /// The public key, and the secret key if any: scrubbed from anything a
    /// server says.
    keys: Vec<String>,
}

impl Dsn {
    /// The host (`o42.ingest.sentry.io`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The project id (`4505`): the last part of the DSN's path.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Where envelopes are posted:
    /// `{scheme}://{host}[:{port}]{path}/api/{project_id}/envelope/`. It
    /// holds no key.
    pub fn envelope_url(&self) -> &str {
        self.endpoint.as_str()
    }

    /// `text` with the keys replaced by `[redacted]`.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for key in &self.keys {
            if !key.is_empty() {
                text = text.replace(key.as_str(), "[redacted]");
            }
        }
        text
    }
}

impl fmt::Display for Dsn {
    /// The DSN with `[redacted]` for its keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://[redacted]@{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}{}", self.path, self.project_id)
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Dsn").field(&self.to_string()).finish()
    }
}

impl FromStr for Dsn {
    type Err = ParseDsnError;

    /// Parses a DSN as Sentry and GlitchTip show it
    /// (`https://PUBLIC_KEY@HOST/PROJECT_ID`, or with a path before the
    /// project id, a port, or a legacy `PUBLIC_KEY:SECRET_KEY`). Surrounding
    /// whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // Our own checks first, for errors that say what is wrong.
        let url =
            reqwest::Url::parse(s).map_err(|e| ParseDsnError::new(format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ParseDsnError::new("expected an http:// or https:// URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ParseDsnError::new("the URL has no host"));
        }
        if url.username().is_empty() {
            return Err(ParseDsnError::new("no public key (the part before the @)"));
        }
        let key_chars = |k: &str| {
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'%'))
        };
        if !key_chars(url.username()) || !url.password().is_none_or(key_chars) {
            return Err(ParseDsnError::new(
                "the key may only hold letters, digits, `-`, `_`, `.` and `~`",
            ));
        }
        let dsn = s.parse::<sentry_types::Dsn>().map_err(|e| {
            use sentry_types::ParseDsnError as E;
            ParseDsnError::new(match e {
                E::NoProjectId | E::InvalidProjectId(_) => {
                    "no project id (the last part of the path)"
                }
                E::NoUsername => "no public key (the part before the @)",
                E::InvalidScheme => "expected an http:// or https:// URL",
                E::InvalidUrl => "not a URL",
            })
        })?;
        let scheme = match dsn.scheme() {
            sentry_types::Scheme::Http => "http",
            sentry_types::Scheme::Https => "https",
        };
        let port = (dsn.port() != dsn.scheme().default_port()).then(|| dsn.port());
        let host = dsn.host().to_owned();
        let path = dsn.path().to_owned();
        let project_id = dsn.project_id().value().to_owned();

        let mut endpoint = format!("{scheme}://{host}");
        if let Some(port) = port {
            endpoint.push_str(&format!(":{port}"));
        }
        endpoint.push_str(&format!("{path}api/{project_id}/envelope/"));
        let endpoint = reqwest::Url::parse(&endpoint)
            .map_err(|_| ParseDsnError::new("cannot make the envelope URL from it"))?;

        let mut auth = format!(
            "Sentry sentry_version=7, sentry_client={CLIENT}, sentry_key={}",
            dsn.public_key()
        );
        if let Some(secret) = dsn.secret_key().filter(|s| !s.is_empty()) {
            auth.push_str(", sentry_secret=");
            auth.push_str(secret);
        }
        let mut auth = HeaderValue::from_str(&auth).map_err(|_| {
            ParseDsnError::new("the key holds characters an HTTP header can't carry")
        })?;
        auth.set_sensitive(true);

        let mut keys = vec![dsn.public_key().to_owned()];
        keys.extend(dsn.secret_key().map(str::to_owned));
        Ok(Self {
            scheme,
            host,
            port,
            path,
            project_id,
            endpoint,
            auth,
            keys,
        })
    }
}

/// A string that isn't a usable Sentry DSN. Its message says what is
/// wrong and never quotes the value (it holds a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDsnError {
    reason: String,
}

impl ParseDsnError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ParseDsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; expected a DSN like https://PUBLIC_KEY@o0.ingest.sentry.io/PROJECT_ID",
            self.reason
        )
    }
}

impl std::error::Error for ParseDsnError {}

/// Sends alerts to Sentry, GlitchTip or any server speaking Sentry's
/// envelope protocol, as events in a project given by its DSN.
///
/// - **Events**: a panic reported by the [panic hook](crate::panic) is an
///   exception of type `panic` with the message and the stack trace
///   (Sentry order, oldest frame first); any other alert is a message: the
///   title (with `FIRING:` or `RESOLVED:` for incidents), the detail, and
///   how many similar alerts were suppressed. The level follows the
///   severity (`critical` is `fatal`, a resolved incident `info`); labels
///   are tags, with `watchpost.kind` (`alert`, `firing`, `resolved`),
///   `watchpost.severity` and `service`; the service's version is the
///   release, its environment the environment, its host the server name;
///   the logger is `watchpost`. The dedupe (or incident) key is the
///   fingerprint, so Sentry groups events as watchpost dedupes them.
/// - **Delivery**: one envelope per alert, posted to
///   [`Dsn::envelope_url`] with the key in `X-Sentry-Auth`. A 429 waits as
///   asked: the longest `X-Sentry-Rate-Limits` entry for errors (or all
///   categories), or `Retry-After`, else 60 s. A rate limit announced on an
///   accepted event holds the next delivery until it passes. 5xx, 408,
///   timeouts and refused connections are retried with backoff; other 4xx
///   are rejected, except 401 and 403 (a wrong, revoked or disabled key),
///   which switch the sink off with one log line.
/// - **Pacing**: none. Alerts are already deduplicated, the ingest API has
///   no fixed per-second limit and says when to slow down, and a panic
///   alert must not queue behind a pacer while the process dies.
/// - **Not a Sentry SDK**: no breadcrumbs, performance tracing, sessions or
///   release health; use the `sentry` crate for those.
///
/// The DSN's key never appears in this type's `Debug`, in an error or in a
/// log line. Available with the `sentry` feature.
///
/// # Examples
///
/// ```
/// use watchpost::alert::{Alert, Alerter, SentrySink};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dsn = "https://0123456789abcdef@o42.ingest.sentry.io/4505"; // from a secret store
/// let sink = SentrySink::from_dsn_str(dsn)?;
/// assert_eq!(
///     format!("{sink:?}"),
///     r#"SentrySink { dsn: Dsn("https://[redacted]@o42.ingest.sentry.io/4505"), .. }"#
/// );
///
/// let alerter = Alerter::builder()
///     .service("checkout-api")
///     .version(env!("CARGO_PKG_VERSION")) // the release
///     .sink(sink)
///     .build()?;
/// alerter.send(Alert::error("Stripe webhook retry rate high").label("route", "/webhooks/stripe"));
/// # Ok(()) }
/// ```
pub struct SentrySink {
    dsn: Dsn,
    /// `None`: the shared client.
    client: Option<reqwest::Client>,
    /// Until when Sentry asked, on an accepted event, that nothing be sent.
    paused_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for SentrySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentrySink")
            .field("dsn", &self.dsn)
            .finish_non_exhaustive()
    }
}

impl SentrySink {
    /// A sink posting to the project `dsn` names, with the HTTP client all
    /// watchpost sinks share (rustls, 10 s timeout).
    pub fn new(dsn: Dsn) -> Self {
        Self {
            dsn,
            client: None,
            paused_until: Mutex::new(None),
        }
    }

    /// A sink for the DSN in `dsn` (surrounding whitespace ignored), as
    /// [`Alerter::from_env`](crate::alert::Alerter::from_env) builds it
    /// from `WATCHPOST_SENTRY_DSN`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `WATCHPOST_SENTRY_DSN` when `dsn`
    /// isn't a usable DSN (see [`ParseDsnError`]). The message never quotes
    /// it.
    pub fn from_dsn_str(dsn: &str) -> Result<Self, ConfigError> {
        let dsn = dsn
            .parse::<Dsn>()
            .map_err(|e| ConfigError::invalid(DSN_VAR, e.to_string()))?;
        Ok(Self::new(dsn))
    }

    /// Uses this client instead of the shared one (a proxy, custom root
    /// certificates, other timeouts). The delivery worker still bounds
    /// each attempt with its own timeout.
    #[must_use]
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The DSN.
    pub fn dsn(&self) -> &Dsn {
        &self.dsn
    }

    /// How long the pause Sentry asked for still lasts, if any.
    fn paused_for(&self) -> Option<Duration> {
        let until = *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until
            .and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// Holds deliveries for `wait` (or longer, if already held longer).
    fn pause(&self, wait: Duration) {
        let Some(until) = Instant::now().checked_add(wait) else {
            return;
        };
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    async fn post(&self, n: &Notification) -> Result<(), SinkError> {
        if let Some(left) = self.paused_for() {
            return Err(SinkError::rate_limited(
                left,
                format!(
                    "Sentry asked to send nothing for {} more (X-Sentry-Rate-Limits)",
                    format_duration(left)
                ),
            ));
        }
        let client = match &self.client {
            Some(client) => client.clone(),
            None => http::shared_client()?,
        };
        let body = event::envelope_bytes(n)?;
        let response = client
            .post(self.dsn.endpoint.clone())
            .header(CONTENT_TYPE, ENVELOPE_TYPE)
            .header(SENTRY_AUTH.clone(), self.dsn.auth.clone())
            .body(body)
            .send()
            .await
            .map_err(http::request_error)?;
        let status = response.status();
        let limits = response
            .headers()
            .get(&SENTRY_RATE_LIMITS)
            .and_then(|v| v.to_str().ok())
            .and_then(rate_limit);
        if status.is_success() {
            if let Some(wait) = limits {
                tracing::debug!(
                    target: LOG_TARGET,
                    sink = "sentry",
                    "Sentry accepted the event and asked to send nothing for {}",
                    format_duration(wait)
                );
                self.pause(wait);
            }
            return Ok(());
        }
        let retry_after = http::retry_after_header(response.headers());
        let description = description(&http::body_text(response).await);
        Err(match status {
            StatusCode::UNAUTHORIZED => SinkError::disabled(format!(
                "Sentry rejected the DSN's key ({}): check WATCHPOST_SENTRY_DSN",
                http::status_error(status, None, &description).message()
            )),
            StatusCode::FORBIDDEN => SinkError::disabled(format!(
                "Sentry refused events for this DSN ({}): the key or the project may be \
                 disabled; check WATCHPOST_SENTRY_DSN",
                http::status_error(status, None, &description).message()
            )),
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = limits.max(retry_after).unwrap_or(DEFAULT_RATE_LIMIT);
                http::status_error(status, Some(wait), &description)
            }
            _ => http::status_error(status, retry_after, &description),
        })
    }
}

impl Sink for SentrySink {
    fn name(&self) -> &str {
        "sentry"
    }

    /// None: see the type's docs.
    fn pacing(&self) -> Pacing {
        Pacing::NONE
    }

    fn deliver<'a>(&'a self, notification: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(async move {
            self.post(notification)
                .await
                .map_err(|e| SinkError::new(e.kind(), self.dsn.scrub(e.message())))
        })
    }
}

/// What a Sentry-compatible server says on an error: Relay's and
/// GlitchTip's `{"detail": ...}`, else the text (but not an HTML page).
fn description(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        if let Some(detail) = ["detail", "error", "message"]
            .iter()
            .find_map(|k| value.get(k).and_then(Value::as_str))
        {
            return detail.to_owned();
        }
    }
    if body.trim_start().starts_with('<') {
        return String::new();
    }
    body.to_owned()
}

/// The wait an `X-Sentry-Rate-Limits` header asks of error events: the
/// longest of its entries (`retry_after:categories:scope:reason:namespaces`,
/// comma-separated) whose categories include `error` or `default`, or are
/// empty (all). `None` if no entry applies.
fn rate_limit(header: &str) -> Option<Duration> {
    header
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.trim().split(':');
            let retry_after = parts.next()?.trim().parse::<f64>().ok()?;
            let categories = parts.next().unwrap_or("").trim();
            let applies = categories.is_empty()
                || categories
                    .split(';')
                    .any(|c| matches!(c.trim(), "error" | "default"));
            applies.then(|| http::seconds(retry_after)).flatten()
        })
        .max()
}

#[cfg(test)]
mod tests;
