//! The webhook sink: Prometheus Alertmanager's webhook JSON (for any
//! receiver that understands it), Slack incoming webhooks and Discord
//! webhooks.
//!
//! A webhook URL is a secret (its path is the credential): it never appears
//! in a `Debug` print, an error or a log line. Only the scheme and host do.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

use super::http;
use crate::alert::env::ConfigError;
use crate::alert::model::Severity;
use crate::alert::notification::{Notification, NotificationKind};
use crate::alert::sink::{DeliverFuture, Pacing, Sink, SinkError};

/// The variable [`WebhookSink::new`]'s errors name.
const URL_VAR: &str = "WATCHPOST_WEBHOOK_URL";

/// What a cut detail ends with.
const TRUNCATED: &str = "…(truncated)";

/// Slack cuts `text` at 40,000 characters; we stay well under it.
const SLACK_TEXT_LIMIT: usize = 30_000;

/// Discord refuses `content` over 2,000 characters.
const DISCORD_CONTENT_LIMIT: usize = 2_000;

/// Discord message flags: no link previews, and no push for info alerts.
const DISCORD_SUPPRESS_EMBEDS: u64 = 1 << 2;
const DISCORD_SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;

/// Slack error codes (plain-text bodies) meaning the webhook URL is dead:
/// revoked, its app or workspace gone, its channel deleted or archived.
const SLACK_DEAD: &[&str] = &[
    "invalid_token",
    "no_service",
    "no_service_id",
    "no_team",
    "team_disabled",
    "channel_not_found",
    "channel_is_archived",
];

/// Discord error codes meaning the webhook is gone: `Unknown Webhook`,
/// `Invalid Webhook Token`.
const DISCORD_DEAD: &[u64] = &[10015, 50027];

/// The payload a [`WebhookSink`] posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WebhookFormat {
    /// Prometheus Alertmanager's webhook payload (`"version": "4"`), one
    /// alert per request: for receivers written against Alertmanager
    /// (Grafana OnCall, ntfy, alertmanager-discord, your own).
    Json,
    /// A Slack incoming webhook (`https://hooks.slack.com/services/...`):
    /// `{"text": ...}` in Slack's mrkdwn.
    Slack,
    /// A Discord channel webhook (`https://discord.com/api/webhooks/...`):
    /// `{"content": ...}` in Discord markdown, mentions disabled.
    Discord,
}

impl WebhookFormat {
    /// The name [`FromStr`] accepts: `json`, `slack` or `discord`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
            Self::Discord => "discord",
        }
    }

    /// The format a URL's host calls for: [`Slack`](Self::Slack) for
    /// `hooks.slack.com`, [`Discord`](Self::Discord) for
    /// `discord.com/api/webhooks/...` (also `discordapp.com`, `ptb.` and
    /// `canary.`; Slack when the path ends in `/slack`, Discord's
    /// Slack-compatible endpoint), else [`Json`](Self::Json), including
    /// for a URL that doesn't parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use watchpost::alert::WebhookFormat;
    ///
    /// assert_eq!(WebhookFormat::infer("https://hooks.slack.com/services/T0/B0/x"), WebhookFormat::Slack);
    /// assert_eq!(WebhookFormat::infer("https://discord.com/api/webhooks/1/x"), WebhookFormat::Discord);
    /// assert_eq!(WebhookFormat::infer("https://alerts.example.com/hook"), WebhookFormat::Json);
    /// ```
    pub fn infer(url: &str) -> Self {
        let Ok(url) = reqwest::Url::parse(url.trim()) else {
            return Self::Json;
        };
        let host = url.host_str().unwrap_or("").trim_end_matches('.');
        let path = url.path();
        match host {
            "hooks.slack.com" | "hooks.slack-gov.com" => Self::Slack,
            "discord.com"
            | "discordapp.com"
            | "ptb.discord.com"
            | "canary.discord.com"
            | "ptb.discordapp.com"
            | "canary.discordapp.com"
                if is_discord_webhook_path(path) =>
            {
                if path.trim_end_matches('/').ends_with("/slack") {
                    Self::Slack
                } else {
                    Self::Discord
                }
            }
            _ => Self::Json,
        }
    }
}

/// `/api/webhooks/...` or `/api/v10/webhooks/...`.
fn is_discord_webhook_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/") else {
        return false;
    };
    let rest = match rest.strip_prefix('v') {
        Some(versioned) => {
            let digits = versioned.bytes().take_while(u8::is_ascii_digit).count();
            match versioned[digits..].strip_prefix('/') {
                Some(after) if digits > 0 => after,
                _ => return false,
            }
        }
        None => rest,
    };
    rest.starts_with("webhooks/")
}

impl fmt::Display for WebhookFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A webhook format name that isn't one of `json` (or `alertmanager`),
/// `slack`, `discord`.
///
/// Its message quotes the value only when it looks like a name (a URL
/// pasted into the wrong variable is not repeated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWebhookFormatError {
    /// The value, if it is short and plain enough to quote safely.
    shown: Option<String>,
}

impl fmt::Display for ParseWebhookFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shown {
            Some(value) => write!(f, "unknown webhook format {value:?}, ")?,
            None => f.write_str("unknown webhook format, ")?,
        }
        f.write_str("expected json (or alertmanager), slack or discord")
    }
}

impl std::error::Error for ParseWebhookFormatError {}

impl FromStr for WebhookFormat {
    type Err = ParseWebhookFormatError;

    /// `json` or `alertmanager`, `slack`, `discord`; case-insensitive,
    /// surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "json" | "alertmanager" => Ok(Self::Json),
            "slack" => Ok(Self::Slack),
            "discord" => Ok(Self::Discord),
            _ => {
                let plain = s.len() <= 24
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                Err(ParseWebhookFormatError {
                    shown: plain.then(|| s.to_owned()),
                })
            }
        }
    }
}

/// Posts alerts to a webhook: Alertmanager JSON, Slack or Discord (see
/// [`WebhookFormat`]).
///
/// - **Name** (in logs and [`Alerter::sink_names`]): `webhook` for
///   [`Json`](WebhookFormat::Json), `slack` or `discord` for those formats.
/// - **Pacing**: Slack at most one message a second per webhook (its
///   documented limit); Discord one a second and 30 a minute (a channel
///   webhook's limit). Json is not paced: the receiver is yours, alerts are
///   already deduplicated, and a 429 from it is still waited out.
/// - **Answers**: any 2xx is delivered. 429 waits as asked (`Retry-After`,
///   or Discord's `retry_after` in the body, preferred since it has
///   milliseconds). 5xx, 408, timeouts and refused connections are retried
///   with backoff. Other 4xx are rejected (not retried) with the API's own
///   words (`invalid_payload`, `Unknown Webhook`), except answers saying
///   the webhook itself is gone, which switch the sink off for the life of
///   the process with one log line (it can never work until someone fixes
///   the URL): Slack `invalid_token`, `no_service`, `no_team`,
///   `team_disabled`, `channel_not_found`, `channel_is_archived`; Discord
///   401 and codes 10015 (`Unknown Webhook`) and 50027 (`Invalid Webhook
///   Token`). A generic receiver's 4xx are only rejected.
/// - **Length**: Discord's 2,000-character `content` and (well under)
///   Slack's 40,000-character `text` are met by cutting the detail, which
///   then ends with `…(truncated)`; the title always stays.
///
/// `Debug` shows the format and the URL's scheme and host only: the path
/// of a webhook URL is its credential.
///
/// [`Alerter::sink_names`]: crate::alert::Alerter::sink_names
///
/// # Examples
///
/// ```
/// use watchpost::alert::{Alert, Alerter, WebhookFormat, WebhookSink};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "https://hooks.slack.com/services/T000/B000/XXXX"; // from a secret store
/// let sink = WebhookSink::new(url, WebhookFormat::infer(url))?;
/// assert_eq!(
///     format!("{sink:?}"),
///     r#"WebhookSink { format: Slack, url: "https://hooks.slack.com/…", headers: [] }"#
/// );
///
/// let alerter = Alerter::builder().service("checkout-api").sink(sink).build()?;
/// alerter.send(Alert::error("Stripe webhook retry rate high").detail("42 retries/min"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebhookSink {
    url: reqwest::Url,
    format: WebhookFormat,
    client: Option<reqwest::Client>,
    headers: HeaderMap,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("WebhookSink")
            .field("format", &self.format)
            .field("url", &redacted(&self.url))
            .field("headers", &names)
            .finish()
    }
}

/// `scheme://host[:port]/…`: what may be shown of a webhook URL.
fn redacted(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}

impl WebhookSink {
    /// A sink posting to `url` in `format` (see [`WebhookFormat::infer`]
    /// to pick it from the URL), with the HTTP client all watchpost sinks
    /// share (rustls, 10 s timeout).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `WATCHPOST_WEBHOOK_URL` when `url`
    /// doesn't parse or isn't `http`/`https`. The message never quotes the
    /// URL.
    pub fn new(url: impl Into<String>, format: WebhookFormat) -> Result<Self, ConfigError> {
        let url = url.into();
        let url = reqwest::Url::parse(url.trim())
            .map_err(|e| ConfigError::invalid(URL_VAR, format!("not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                URL_VAR,
                "expected an http:// or https:// URL",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(URL_VAR, "the URL has no host"));
        }
        Ok(Self {
            url,
            format,
            client: None,
            headers: HeaderMap::new(),
        })
    }

    /// Uses this client instead of the shared one (a proxy, custom root
    /// certificates, other timeouts). The delivery worker still bounds
    /// each attempt with its own timeout.
    #[must_use]
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Adds a header to every request, such as an `Authorization` header
    /// for a receiver that wants one. The value is marked sensitive and is
    /// never shown (`Debug` lists header names only).
    ///
    /// # Examples
    ///
    /// ```
    /// use reqwest::header::{HeaderValue, AUTHORIZATION};
    /// use watchpost::alert::{WebhookFormat, WebhookSink};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let token = "s3cret"; // from a secret store
    /// let sink = WebhookSink::new("https://alerts.example.com/hook", WebhookFormat::Json)?
    ///     .with_header(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}"))?);
    /// assert!(!format!("{sink:?}").contains(token));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        self.headers.insert(name, value);
        self
    }

    /// The payload format.
    pub fn format(&self) -> WebhookFormat {
        self.format
    }

    /// The request body for `n`, as JSON.
    fn payload(&self, n: &Notification) -> Value {
        match self.format {
            WebhookFormat::Json => alertmanager_payload(n),
            WebhookFormat::Slack => json!({
                "text": slack_text(n),
                "unfurl_links": false,
                "unfurl_media": false,
            }),
            WebhookFormat::Discord => {
                let mut flags = DISCORD_SUPPRESS_EMBEDS;
                if n.alert().severity() == Severity::Info {
                    flags |= DISCORD_SUPPRESS_NOTIFICATIONS;
                }
                json!({
                    "content": discord_content(n),
                    "allowed_mentions": {"parse": []},
                    "flags": flags,
                })
            }
        }
    }

    async fn post(&self, n: &Notification) -> Result<(), SinkError> {
        let client = match &self.client {
            Some(client) => client.clone(),
            None => http::shared_client()?,
        };
        let body = serde_json::to_vec(&self.payload(n))
            .map_err(|e| SinkError::rejected(format!("cannot encode the payload: {e}")))?;
        let response = client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(http::request_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = http::retry_after_header(response.headers());
        let body = http::body_text(response).await;
        Err(match self.format {
            WebhookFormat::Json => json_error(status, retry_after, &body),
            WebhookFormat::Slack => slack_error(status, retry_after, &body),
            WebhookFormat::Discord => discord_error(status, retry_after, &body),
        })
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        match self.format {
            WebhookFormat::Json => "webhook",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Discord => "discord",
        }
    }

    fn pacing(&self) -> Pacing {
        match self.format {
            WebhookFormat::Json => Pacing::NONE,
            WebhookFormat::Slack => Pacing::every(Duration::from_secs(1)),
            WebhookFormat::Discord => Pacing::every(Duration::from_secs(1)).per_minute(30),
        }
    }

    fn deliver<'a>(&'a self, notification: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(self.post(notification))
    }
}

// ---------------------------------------------------------------------------
// Answers

/// A generic receiver: its `error`/`message`/`detail` field if it answers
/// JSON, else its text. 4xx are rejected, never disabled.
fn json_error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SinkError {
    let description = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            ["error", "message", "detail"]
                .iter()
                .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_owned))
        })
        .unwrap_or_else(|| body.to_owned());
    http::status_error(status, retry_after, &description)
}

/// Slack answers plain-text codes (`invalid_payload`, `no_service`).
fn slack_error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SinkError {
    let code = body.trim();
    let error = http::status_error(status, retry_after, code);
    if status.is_client_error() && SLACK_DEAD.contains(&code) {
        return SinkError::disabled(error.message());
    }
    error
}

/// Discord answers `{"message": "Unknown Webhook", "code": 10015}`, and
/// on 429 `{"retry_after": 0.5, "global": false, ...}`.
fn discord_error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SinkError {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name));
    let code = field("code").and_then(Value::as_u64);
    let description = match field("message").and_then(Value::as_str) {
        Some(message) => match code {
            Some(code) if code != 0 => format!("{message} (code {code})"),
            _ => message.to_owned(),
        },
        None => body.to_owned(),
    };
    let retry_after = field("retry_after")
        .and_then(Value::as_f64)
        .and_then(http::seconds)
        .or(retry_after);
    let error = http::status_error(status, retry_after, &description);
    let dead = status == StatusCode::UNAUTHORIZED
        || (status.is_client_error() && code.is_some_and(|c| DISCORD_DEAD.contains(&c)));
    if dead {
        return SinkError::disabled(error.message());
    }
    error
}

// ---------------------------------------------------------------------------
// Alertmanager

/// What Alertmanager sends as `endsAt` for an alert still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert in Alertmanager's webhook format (version 4).
fn alertmanager_payload(n: &Notification) -> Value {
    let alert = n.alert();
    let service = n.service();
    let title = alert.title();

    let mut labels = Map::new();
    for (name, value) in alert.labels() {
        labels.insert(name.to_owned(), Value::from(value));
    }
    // Ours win over the alert's labels of the same name.
    labels.insert("alertname".into(), Value::from(title));
    labels.insert("severity".into(), Value::from(alert.severity().as_str()));
    labels.insert("service".into(), Value::from(service.name.as_str()));
    if let Some(env) = &service.environment {
        labels.insert("environment".into(), Value::from(env.as_str()));
    }
    labels.insert("instance".into(), Value::from(service.host.as_str()));
    if let Some(version) = &service.version {
        labels.insert("version".into(), Value::from(version.as_str()));
    }

    let mut annotations = Map::new();
    annotations.insert("summary".into(), Value::from(title));
    let similar = n.similar_line();
    let description = alert
        .detail_text()
        .into_iter()
        .chain(similar.as_deref())
        .collect::<Vec<_>>()
        .join("\n");
    if !description.is_empty() {
        annotations.insert("description".into(), Value::from(description));
    }
    if let Some(duration) = n.duration_line() {
        annotations.insert("duration".into(), Value::from(duration));
    }

    let (status, starts_at, ends_at) = match n.kind() {
        NotificationKind::Resolved { duration } => {
            let started = n
                .started_at()
                .or_else(|| n.time().checked_sub(duration))
                .unwrap_or_else(|| n.time());
            ("resolved", rfc3339(started), rfc3339(n.time()))
        }
        NotificationKind::Firing => (
            "firing",
            rfc3339(n.started_at().unwrap_or_else(|| n.time())),
            ZERO_TIME.to_owned(),
        ),
        NotificationKind::Alert => ("firing", rfc3339(n.time()), ZERO_TIME.to_owned()),
    };

    let group_key = format!("{{}}:{{alertname={}}}", Value::from(title));
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "watchpost",
        "groupLabels": {"alertname": title},
        "commonLabels": labels.clone(),
        "commonAnnotations": annotations.clone(),
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts_at,
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": key_fingerprint(n.key()),
        }],
    })
}

/// RFC 3339 in UTC with milliseconds, clamped to what can be written
/// (humantime panics before 1970 and fails after 9999).
fn rfc3339(time: SystemTime) -> String {
    const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let max = SystemTime::UNIX_EPOCH + Duration::from_secs(MAX_SECS);
    let time = time.clamp(SystemTime::UNIX_EPOCH, max);
    humantime::format_rfc3339_millis(time).to_string()
}

/// 16 hex digits, stable per key (so firing and resolved match): the key
/// itself when it already is a title fingerprint, else its FNV-1a hash.
fn key_fingerprint(key: &str) -> String {
    let is_fingerprint =
        key.len() == 16 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_fingerprint {
        return key.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

// ---------------------------------------------------------------------------
// Slack and Discord text

/// The detail with any ``` broken up, so it can't close our code block.
fn fenced_detail(n: &Notification) -> Option<String> {
    n.alert()
        .detail_text()
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim_end().replace("```", "`\u{200b}`\u{200b}`"))
}

/// How a text is measured against its limit.
struct Limit {
    /// The most the message may measure.
    max: usize,
    /// What a character of the rendered message counts.
    rendered: fn(char) -> usize,
    /// What a character of the raw detail counts once rendered.
    raw: fn(char) -> usize,
    /// Renders the (cut) detail.
    escape: fn(&str) -> Cow<'_, str>,
}

/// Lays out `before`, the detail in a code block, then `after` (all
/// joined by newlines), cutting the detail so the whole fits `limit`. A
/// message still too long (a huge title) is cut at the end.
fn layout(before: &[String], detail: Option<&str>, after: &[String], limit: &Limit) -> String {
    let measure = |s: &str| s.chars().map(limit.rendered).sum::<usize>();
    // Each fixed part and its newline.
    let fixed: usize = before.iter().chain(after).map(|p| measure(p) + 1).sum();
    let mut lines: Vec<Cow<'_, str>> = before.iter().map(|s| Cow::Borrowed(s.as_str())).collect();
    if let Some(detail) = detail {
        // "```\n" + detail + "\n```"
        let room = limit.max.saturating_sub(fixed + 8);
        let cut = cut(detail, room, limit.raw);
        lines.push(Cow::Owned(format!("```\n{}\n```", (limit.escape)(&cut))));
    }
    lines.extend(after.iter().map(|s| Cow::Borrowed(s.as_str())));
    let text = lines.join("\n");
    if measure(&text) <= limit.max {
        text
    } else {
        cut(&text, limit.max, limit.rendered).into_owned()
    }
}

/// `s` cut so that its characters cost at most `room`, ending with
/// [`TRUNCATED`] when cut. Cuts on a character boundary.
fn cut(s: &str, room: usize, cost: fn(char) -> usize) -> Cow<'_, str> {
    if s.chars().map(cost).sum::<usize>() <= room {
        return Cow::Borrowed(s);
    }
    let mark: usize = TRUNCATED.chars().map(cost).sum();
    // No room for the mark: just cut.
    let budget = if room < mark { room } else { room - mark };
    let mut used = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        used += cost(c);
        if used > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    if room < mark {
        return Cow::Borrowed(&s[..end]);
    }
    Cow::Owned(format!("{}{TRUNCATED}", &s[..end]))
}

/// Slack's rule: `&`, `<` and `>` as entities in anything we didn't write.
fn slack_escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A character's length once Slack-escaped.
fn slack_cost(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

/// The Slack message: bold headline, context, duration, detail in a code
/// block, labels, similar count.
fn slack_text(n: &Notification) -> String {
    let mut before = vec![
        format!("*{}*", slack_escape(&n.headline())),
        slack_escape(&n.context_line()).into_owned(),
    ];
    before.extend(n.duration_line().map(|l| slack_escape(&l).into_owned()));
    let mut after = Vec::new();
    after.extend(n.labels_line().map(|l| slack_escape(&l).into_owned()));
    after.extend(n.similar_line().map(|l| slack_escape(&l).into_owned()));
    let detail = fenced_detail(n);
    let limit = Limit {
        max: SLACK_TEXT_LIMIT,
        rendered: |_| 1,
        raw: slack_cost,
        escape: slack_escape,
    };
    layout(&before, detail.as_deref(), &after, &limit)
}

/// Backslash-escapes Discord markdown (`*`, `_`, `~`, `|`, `` ` ``, `\`)
/// in anything we didn't write outside the code block.
fn discord_escape(s: &str) -> Cow<'_, str> {
    const SPECIAL: [char; 6] = ['\\', '*', '_', '~', '|', '`'];
    if !s.contains(SPECIAL) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// A character's length for Discord's limit. Counted in UTF-16 units,
/// which is never less than in characters: safe whichever Discord counts.
fn discord_cost(c: char) -> usize {
    c.len_utf16()
}

/// The Discord message: bold headline, context, duration, detail in a
/// code block, labels, similar count; at most 2,000 characters.
fn discord_content(n: &Notification) -> String {
    let mut before = vec![
        format!("**{}**", discord_escape(&n.headline())),
        discord_escape(&n.context_line()).into_owned(),
    ];
    before.extend(n.duration_line().map(|l| discord_escape(&l).into_owned()));
    let mut after = Vec::new();
    after.extend(n.labels_line().map(|l| discord_escape(&l).into_owned()));
    after.extend(n.similar_line().map(|l| discord_escape(&l).into_owned()));
    let detail = fenced_detail(n);
    let limit = Limit {
        max: DISCORD_CONTENT_LIMIT,
        rendered: discord_cost,
        raw: discord_cost,
        escape: |s| Cow::Borrowed(s),
    };
    layout(&before, detail.as_deref(), &after, &limit)
}

#[cfg(test)]
mod tests;
