//! The Telegram sink: Bot API `sendMessage`, HTML parse mode, 4096 chars.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};

use super::http;
use crate::alert::env::ConfigError;
use crate::alert::model::Severity;
use crate::alert::notification::Notification;
use crate::alert::sink::{DeliverFuture, Pacing, Sink, SinkError};
use crate::alert::worker::LOG_TARGET;

const DEFAULT_API_URL: &str = "https://api.telegram.org";
const TOKEN_VAR: &str = "TELEGRAM_BOT_TOKEN";
const CHAT_VAR: &str = "TELEGRAM_CHAT_ID";
const API_URL_VAR: &str = "WATCHPOST_TELEGRAM_API_URL";

/// Sends alerts to a Telegram chat, group, channel or forum topic through
/// the Bot API's `sendMessage`.
///
/// Messages are HTML: the headline in bold first (what a phone's lock
/// screen shows), then where it comes from, how long a resolved incident
/// lasted, the detail in a `<pre>` block, the labels and the count of
/// similar alerts suppressed. Everything is escaped, and the message is cut
/// to Telegram's 4096 characters (the detail first, with a visible
/// `…(truncated)`). Info alerts are delivered silently by default.
///
/// Delivery follows what the API answers: 429s wait the `retry_after` it
/// asks for; 5xx, timeouts and refused connections are retried by the
/// [`Alerter`](crate::alert::Alerter); a group upgraded to a supergroup is
/// followed to its new id (with one warning saying to update
/// `TELEGRAM_CHAT_ID`); a message Telegram can't parse is resent as plain
/// text; a wrong token (401) switches the sink off with one log line.
/// Paced to one message a second, and 20 a minute in groups and channels.
///
/// The bot token is a secret: it never appears in this type's `Debug`, in
/// an error or in a log line.
///
/// Usually built by [`Alerter::from_env`](crate::alert::Alerter::from_env)
/// from `TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID`. Available with the
/// `telegram` feature.
///
/// # Examples
///
/// ```
/// use watchpost::alert::{Alerter, TelegramSink};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = TelegramSink::builder("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "-1001234567890")
///     .thread_id(7) // a forum topic
///     .build()?;
/// assert!(!format!("{sink:?}").contains("AAHdq"));
///
/// let alerter = Alerter::builder().service("checkout-api").sink(sink).build()?;
/// # Ok(()) }
/// ```
pub struct TelegramSink {
    /// `{api_url}/bot{token}/sendMessage`: a secret.
    endpoint: reqwest::Url,
    /// The token, kept to scrub it from anything an API or a library says.
    token: String,
    api_host: String,
    chat: Mutex<ChatId>,
    thread_id: Option<i64>,
    silent_info: bool,
    /// `None`: the shared client.
    client: Option<reqwest::Client>,
    warned_plain: AtomicBool,
}

impl fmt::Debug for TelegramSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramSink")
            .field("chat_id", &format_args!("{}", self.chat()))
            .field("api_host", &self.api_host)
            .field("thread_id", &self.thread_id)
            .field("silent_info", &self.silent_info)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TelegramSink`]; made by [`TelegramSink::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct TelegramSinkBuilder {
    token: String,
    chat_id: String,
    api_url: String,
    thread_id: Option<i64>,
    silent_info: bool,
    client: Option<reqwest::Client>,
}

impl fmt::Debug for TelegramSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramSinkBuilder")
            .field("token", &"[redacted]")
            // Not shown unless valid: it could be a token in the wrong variable.
            .field(
                "chat_id",
                &match ChatId::parse(&self.chat_id) {
                    Some(chat) => chat.to_string(),
                    None => "[invalid]".to_owned(),
                },
            )
            .field("thread_id", &self.thread_id)
            .field("silent_info", &self.silent_info)
            .finish_non_exhaustive()
    }
}

impl TelegramSink {
    /// A builder for a sink posting as the bot `token` (from BotFather:
    /// `123456789:AA…`) to `chat_id`: a chat, group or channel id (an
    /// integer, negative for groups) or a public `@channelusername`.
    pub fn builder(token: impl Into<String>, chat_id: impl Into<String>) -> TelegramSinkBuilder {
        TelegramSinkBuilder {
            token: token.into(),
            chat_id: chat_id.into(),
            api_url: DEFAULT_API_URL.to_owned(),
            thread_id: None,
            silent_info: true,
            client: None,
        }
    }

    fn chat(&self) -> ChatId {
        self.chat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Switches to `new` if the chat is still `old`; `true` if it did.
    fn migrate(&self, old: &ChatId, new: i64) -> bool {
        let mut chat = self.chat.lock().unwrap_or_else(PoisonError::into_inner);
        if *chat != *old {
            return false;
        }
        *chat = ChatId::Id(new);
        true
    }

    /// Removes the token (and its secret half) from a message.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(&self.token, "[redacted]");
        if let Some((_, secret)) = self.token.split_once(':') {
            if secret.len() >= 8 {
                text = text.replace(secret, "[redacted]");
            }
        }
        text
    }

    fn body(&self, n: &Notification, chat: &ChatId, markup: Markup) -> Value {
        let mut body = json!({
            "chat_id": chat.to_json(),
            "text": render(n, markup),
            "link_preview_options": {"is_disabled": true},
        });
        if markup == Markup::Html {
            body["parse_mode"] = json!("HTML");
        }
        if let Some(thread) = self.thread_id {
            body["message_thread_id"] = json!(thread);
        }
        if self.silent_info && n.alert().severity() == Severity::Info {
            body["disable_notification"] = json!(true);
        }
        body
    }

    async fn deliver_once(&self, n: &Notification) -> Result<(), SinkError> {
        let client = match &self.client {
            Some(client) => client.clone(),
            None => http::shared_client()?,
        };
        let mut markup = Markup::Html;
        let mut migrated = false;
        loop {
            let chat = self.chat();
            match self.post(&client, &self.body(n, &chat, markup)).await? {
                Answer::Sent => return Ok(()),
                Answer::CantParse(description) if markup == Markup::Html => {
                    // A bug in our escaping if it ever happens: say so once.
                    let description = self.scrub(&description);
                    if self.warned_plain.swap(true, Ordering::Relaxed) {
                        tracing::debug!(
                            target: LOG_TARGET,
                            sink = "telegram",
                            "Telegram could not parse the HTML message ({description}), resending as plain text"
                        );
                    } else {
                        tracing::warn!(
                            target: LOG_TARGET,
                            sink = "telegram",
                            "Telegram could not parse the HTML message ({description}), resending as plain text"
                        );
                    }
                    markup = Markup::Plain;
                }
                Answer::Migrated { to, .. } if !migrated => {
                    migrated = true;
                    // Unless another delivery already followed the move.
                    if self.migrate(&chat, to) {
                        tracing::warn!(
                            target: LOG_TARGET,
                            sink = "telegram",
                            old_chat_id = %chat,
                            new_chat_id = to,
                            "Telegram group {chat} was upgraded to a supergroup with id {to}: \
                             alerts now go there; update TELEGRAM_CHAT_ID to {to}"
                        );
                    }
                }
                Answer::CantParse(description) => {
                    return Err(http::status_error(
                        reqwest::StatusCode::BAD_REQUEST,
                        None,
                        &description,
                    ))
                }
                Answer::Migrated { error, .. } => return Err(error),
            }
        }
    }

    /// One `sendMessage` call.
    async fn post(&self, client: &reqwest::Client, body: &Value) -> Result<Answer, SinkError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| SinkError::rejected(format!("cannot encode the message: {e}")))?;
        let response = client
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(http::request_error)?;
        let status = response.status();
        let header_retry = http::retry_after_header(response.headers());
        let text = http::body_text(response).await;
        let api: Option<Value> = serde_json::from_str(&text).ok();
        let api = api.as_ref().filter(|v| v.is_object());

        if status.is_success() {
            return match api.and_then(|v| v.get("ok")).and_then(Value::as_bool) {
                Some(true) => Ok(Answer::Sent),
                Some(false) => Err(SinkError::rejected(format!(
                    "Telegram answered HTTP {} with ok=false: {}",
                    status.as_u16(),
                    api.and_then(|v| v["description"].as_str())
                        .unwrap_or("")
                        .chars()
                        .take(300)
                        .collect::<String>()
                ))),
                None => Err(SinkError::rejected(format!(
                    "Telegram answered HTTP {} without the expected JSON",
                    status.as_u16()
                ))),
            };
        }

        let description = match api {
            Some(v) => v["description"].as_str().unwrap_or("").to_owned(),
            // An HTML error page from a proxy says nothing useful.
            None if text.trim_start().starts_with('<') => String::new(),
            None => text,
        };
        let parameters = api.map_or(&Value::Null, |v| &v["parameters"]);
        match status.as_u16() {
            401 => {
                return Err(SinkError::disabled(
                    "Telegram rejected the bot token (401 Unauthorized): check TELEGRAM_BOT_TOKEN",
                ))
            }
            404 => {
                return Err(SinkError::disabled(
                    "Telegram answered 404 Not Found for this bot, which means a malformed bot \
                     token (or a wrong WATCHPOST_TELEGRAM_API_URL): check TELEGRAM_BOT_TOKEN",
                ))
            }
            _ => {}
        }
        let retry_after = parameters["retry_after"]
            .as_f64()
            .and_then(http::seconds)
            .or(header_retry);
        let error = http::status_error(status, retry_after, &description);
        if status.is_client_error() {
            if let Some(to) = parameters["migrate_to_chat_id"].as_i64() {
                return Ok(Answer::Migrated { to, error });
            }
            let lower = description.to_ascii_lowercase();
            if status.as_u16() == 400
                && (lower.contains("can't parse entities")
                    || lower.contains("can't parse message text"))
            {
                return Ok(Answer::CantParse(description));
            }
        }
        Err(error)
    }
}

/// What one call came to, when it isn't a plain failure.
enum Answer {
    Sent,
    /// The HTML didn't parse; the API's description.
    CantParse(String),
    /// The group became a supergroup with id `to`.
    Migrated {
        to: i64,
        error: SinkError,
    },
}

impl Sink for TelegramSink {
    fn name(&self) -> &str {
        "telegram"
    }

    fn pacing(&self) -> Pacing {
        let pacing = Pacing::every(Duration::from_secs(1));
        if self.chat().is_group() {
            pacing.per_minute(20)
        } else {
            pacing
        }
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(async move {
            self.deliver_once(n)
                .await
                .map_err(|e| SinkError::new(e.kind(), self.scrub(e.message())))
        })
    }
}

impl TelegramSinkBuilder {
    /// The Bot API's base URL (default `https://api.telegram.org`): a
    /// [local Bot API server](https://github.com/tdlib/telegram-bot-api),
    /// a proxy, or a test server.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// Posts in this forum topic (`message_thread_id`).
    pub fn thread_id(mut self, thread_id: i64) -> Self {
        self.thread_id = Some(thread_id);
        self
    }

    /// Delivers [`Info`](Severity::Info) alerts without a sound
    /// (`disable_notification`). Default `true`.
    pub fn silent_info(mut self, silent: bool) -> Self {
        self.silent_info = silent;
        self
    }

    /// The HTTP client (default: one shared by watchpost's HTTP sinks,
    /// rustls, 10 s timeout). Give your own for a proxy or custom roots.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the settings and builds the sink. Nothing is sent.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `TELEGRAM_BOT_TOKEN` (empty, with
    /// whitespace, or not shaped like `123456789:AA…`; the error never
    /// quotes it), `TELEGRAM_CHAT_ID` (neither an integer nor
    /// `@channelusername`) or `WATCHPOST_TELEGRAM_API_URL` (not an http or
    /// https URL).
    pub fn build(self) -> Result<TelegramSink, ConfigError> {
        check_token(&self.token)?;
        let chat = ChatId::parse(&self.chat_id).ok_or_else(|| {
            ConfigError::invalid(
                CHAT_VAR,
                "expected an integer chat id (like 123456789, or -1001234567890 for a group) \
                 or a public @channelusername",
            )
        })?;
        let base = reqwest::Url::parse(self.api_url.trim())
            .map_err(|e| ConfigError::invalid(API_URL_VAR, format!("not a URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                API_URL_VAR,
                "expected an http or https URL",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(ConfigError::invalid(
                API_URL_VAR,
                "expected a base URL without a query or fragment",
            ));
        }
        let Some(host) = base.host_str() else {
            return Err(ConfigError::invalid(
                API_URL_VAR,
                "expected a URL with a host",
            ));
        };
        let api_host = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let endpoint = format!(
            "{}/bot{}/sendMessage",
            base.as_str().trim_end_matches('/'),
            self.token
        );
        let endpoint = reqwest::Url::parse(&endpoint).map_err(|_| {
            ConfigError::invalid(API_URL_VAR, "cannot make the sendMessage URL from it")
        })?;
        Ok(TelegramSink {
            endpoint,
            token: self.token,
            api_host,
            chat: Mutex::new(chat),
            thread_id: self.thread_id,
            silent_info: self.silent_info,
            client: self.client,
            warned_plain: AtomicBool::new(false),
        })
    }
}

/// Checks a bot token's shape without ever quoting it.
fn check_token(token: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| Err(ConfigError::invalid(TOKEN_VAR, reason));
    if token.is_empty() {
        return invalid("is empty");
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("contains whitespace or control characters (a stray space or newline?)");
    }
    let shape = "expected the token BotFather gives: digits, a colon, then letters, digits, \
                 `-` and `_` (like 123456789:AA…)";
    let Some((id, secret)) = token.split_once(':') else {
        return invalid(shape);
    };
    let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    let secret_ok = !secret.is_empty()
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if id_ok && secret_ok {
        Ok(())
    } else {
        invalid(shape)
    }
}

/// Where messages go: a numeric id or a public `@username`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChatId {
    Id(i64),
    Username(String),
}

impl ChatId {
    fn parse(s: &str) -> Option<Self> {
        if let Ok(id) = s.parse::<i64>() {
            return Some(Self::Id(id));
        }
        let name = s.strip_prefix('@')?;
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        valid.then(|| Self::Username(s.to_owned()))
    }

    /// Groups, supergroups and channels (negative ids, `@channels`), which
    /// Telegram limits to 20 messages a minute.
    fn is_group(&self) -> bool {
        match self {
            Self::Id(id) => *id < 0,
            Self::Username(_) => true,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Id(id) => json!(id),
            Self::Username(name) => json!(name),
        }
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Username(name) => f.write_str(name),
        }
    }
}

// ---------------------------------------------------------------------------
// Rendering

/// Telegram's limit on a message's text.
const MAX_CHARS: usize = 4096;
/// Caps, in characters before escaping, so that no part can crowd out the
/// rest: the headline (with the title), the context line, label names and
/// values.
const HEADLINE_MAX: usize = 256;
const CONTEXT_MAX: usize = 256;
const LABEL_NAME_MAX: usize = 64;
const LABEL_VALUE_MAX: usize = 128;
/// All labels together, in characters after escaping.
const LABELS_MAX: usize = 1024;
const TRUNCATED: &str = "…(truncated)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Markup {
    Html,
    Plain,
}

impl Markup {
    /// How many characters `c` takes once escaped.
    fn width(self, c: char) -> usize {
        match (self, c) {
            (Self::Html, '&') => 5,
            (Self::Html, '<' | '>') => 4,
            _ => 1,
        }
    }

    fn len(self, s: &str) -> usize {
        s.chars().map(|c| self.width(c)).sum()
    }

    fn escape(self, s: &str) -> String {
        if self == Self::Plain {
            return s.to_owned();
        }
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                c => out.push(c),
            }
        }
        out
    }

    /// `inner` (already escaped) in `<tag>`, or as is in plain text.
    fn tag(self, tag: &str, inner: &str) -> String {
        match self {
            Self::Html => format!("<{tag}>{inner}</{tag}>"),
            Self::Plain => inner.to_owned(),
        }
    }
}

/// `s` escaped, cut first (before escaping, on a char boundary) to at most
/// `max` characters with `…` marking the cut.
fn capped(markup: Markup, s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return markup.escape(s);
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    markup.escape(&cut) + "…"
}

/// `s` escaped, or the longest prefix of it that fits in `budget`
/// characters once escaped and followed by `…(truncated)`. `None` if not
/// even the marker fits.
fn fitted(markup: Markup, s: &str, budget: usize) -> Option<String> {
    if markup.len(s) <= budget {
        return Some(markup.escape(s));
    }
    let room = budget.checked_sub(TRUNCATED.chars().count())?;
    let mut used = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        used += markup.width(c);
        if used > room {
            break;
        }
        end = i + c.len_utf8();
    }
    Some(markup.escape(&s[..end]) + TRUNCATED)
}

/// The labels as `name=value` pairs (names in `<code>`), as many as fit in
/// [`LABELS_MAX`], then how many were left out.
fn labels(markup: Markup, n: &Notification) -> Option<String> {
    let labels = n.alert().labels();
    let total = labels.len();
    if total == 0 {
        return None;
    }
    let more = |left: usize| format!("…(+{left} more)");
    let room = LABELS_MAX - more(total).chars().count() - 1;
    let mut line = String::new();
    let mut len = 0;
    for (shown, (name, value)) in labels.enumerate() {
        let pair = format!(
            "{}={}",
            markup.tag("code", &capped(markup, name, LABEL_NAME_MAX)),
            capped(markup, value, LABEL_VALUE_MAX)
        );
        let pair_len = pair.chars().count() + usize::from(shown > 0);
        if len + pair_len > room {
            if shown > 0 {
                line.push(' ');
            }
            line.push_str(&more(total - shown));
            return Some(line);
        }
        if shown > 0 {
            line.push(' ');
        }
        line.push_str(&pair);
        len += pair_len;
    }
    Some(line)
}

/// The message: headline, context, duration, detail, labels, similar
/// count, one per line; at most [`MAX_CHARS`] characters.
fn render(n: &Notification, markup: Markup) -> String {
    let headline = markup.tag("b", &capped(markup, &n.headline(), HEADLINE_MAX));
    let context = markup.tag("i", &capped(markup, &n.context_line(), CONTEXT_MAX));
    let duration = n.duration_line().map(|d| capped(markup, &d, CONTEXT_MAX));
    let labels = labels(markup, n);
    let similar = n.similar_line().map(|s| capped(markup, &s, CONTEXT_MAX));

    let mut lines = vec![headline, context];
    lines.extend(duration);
    let fixed: usize = lines
        .iter()
        .chain(&labels)
        .chain(&similar)
        .map(|l| l.chars().count() + 1)
        .sum();
    let detail = n.alert().detail_text().filter(|d| !d.is_empty());
    if let Some(detail) = detail {
        let wrapper = markup.tag("pre", "").chars().count();
        let budget = MAX_CHARS.saturating_sub(fixed + wrapper);
        if let Some(detail) = fitted(markup, detail, budget) {
            lines.push(markup.tag("pre", &detail));
        }
    }
    lines.extend(labels);
    lines.extend(similar);
    lines.join("\n")
}

#[cfg(test)]
mod tests;
