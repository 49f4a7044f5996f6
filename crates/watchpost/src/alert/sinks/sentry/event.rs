//! Notifications as Sentry events, in envelopes.

use std::borrow::Cow;
use std::time::SystemTime;

use sentry_types::protocol::v7::{
    ClientSdkInfo, Envelope, EnvelopeHeaders, Event, Exception, Frame, Level, Map, Mechanism,
    Stacktrace, Value,
};

use crate::alert::model::Severity;
use crate::alert::notification::{format_duration, Notification, NotificationKind};
use crate::alert::sink::SinkError;
use crate::panic::{PanicReport, StackFrame};

/// Sentry keeps at most this many characters of a message.
const MESSAGE_MAX: usize = 8192;
/// Sentry's limits on a tag's key and value, in characters.
const TAG_KEY_MAX: usize = 32;
const TAG_VALUE_MAX: usize = 200;

/// The tag saying which message this is: `alert`, `firing` or `resolved`.
const KIND_TAG: &str = "watchpost.kind";
/// The tag with watchpost's own severity (`critical` is Sentry's `fatal`).
const SEVERITY_TAG: &str = "watchpost.severity";
/// The tag with the service's name.
const SERVICE_TAG: &str = "service";

/// What events say sent them.
fn sdk() -> ClientSdkInfo {
    ClientSdkInfo {
        name: "watchpost".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        integrations: Vec::new(),
        packages: Vec::new(),
    }
}

/// `n` as an envelope holding one event, serialized.
pub(super) fn envelope_bytes(n: &Notification) -> Result<Vec<u8>, SinkError> {
    let event = event(n);
    let headers = EnvelopeHeaders::new()
        .with_event_id(event.event_id)
        .with_sdk(sdk())
        .with_sent_at(SystemTime::now());
    let mut envelope = Envelope::new().with_headers(headers);
    envelope.add_item(event);
    let mut body = Vec::new();
    envelope
        .to_writer(&mut body)
        .map_err(|e| SinkError::rejected(format!("cannot encode the event: {e}")))?;
    Ok(body)
}

/// `n` as a Sentry event.
///
/// - A panic (an alert carrying a [`PanicReport`]) is an exception of type
///   `panic` with its stack trace, oldest frame first as Sentry wants;
///   anything else is a message: the title (prefixed `FIRING:` or
///   `RESOLVED:` for incidents), then how long it lasted, the detail and
///   the similar count.
/// - The level follows the severity (`critical` is `fatal`); a resolved
///   incident is `info`.
/// - The labels are tags, with [`KIND_TAG`], [`SEVERITY_TAG`] and
///   [`SERVICE_TAG`] added (ours win over a label of the same name).
/// - The dedupe key is the fingerprint, so Sentry groups as watchpost
///   dedupes, and an incident's firing and resolved events are one issue.
pub(super) fn event(n: &Notification) -> Event<'static> {
    let alert = n.alert();
    let service = n.service();
    let report = alert.panic_report();

    let mut tags = Map::new();
    for (name, value) in alert.labels() {
        if let (Some(name), Some(value)) = (tag_key(name), tag_value(value)) {
            tags.insert(name, value);
        }
    }
    tags.insert(KIND_TAG.to_owned(), kind_name(n.kind()).to_owned());
    tags.insert(
        SEVERITY_TAG.to_owned(),
        alert.severity().as_str().to_owned(),
    );
    if let Some(name) = tag_value(&service.name) {
        tags.insert(SERVICE_TAG.to_owned(), name);
    }

    let mut extra = Map::new();
    if n.similar() > 0 {
        extra.insert("watchpost.similar".to_owned(), Value::from(n.similar()));
        extra.insert(
            "watchpost.similar_window".to_owned(),
            Value::from(format_duration(n.window())),
        );
    }
    if let NotificationKind::Resolved { duration } = n.kind() {
        extra.insert(
            "watchpost.duration".to_owned(),
            Value::from(format_duration(duration)),
        );
        extra.insert(
            "watchpost.duration_secs".to_owned(),
            Value::from(duration.as_secs_f64()),
        );
    }

    let (message, exception, platform) = match report {
        Some(report) => (None, vec![exception(report)], "native"),
        None => (Some(message(n)), Vec::new(), "other"),
    };

    Event {
        event_id: sentry_types::random_uuid(),
        level: level(n),
        fingerprint: Cow::Owned(vec![Cow::Owned(n.key().to_owned())]),
        message,
        exception: exception.into(),
        logger: Some("watchpost".to_owned()),
        platform: Cow::Borrowed(platform),
        timestamp: n.time(),
        server_name: Some(Cow::Owned(service.host.clone())),
        release: service.version.clone().map(Cow::Owned),
        environment: service.environment.clone().map(Cow::Owned),
        tags,
        extra,
        sdk: Some(Cow::Owned(sdk())),
        ..Event::default()
    }
}

/// `alert`, `firing` or `resolved`.
fn kind_name(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Alert => "alert",
        NotificationKind::Firing => "firing",
        NotificationKind::Resolved { .. } => "resolved",
    }
}

fn level(n: &Notification) -> Level {
    if let NotificationKind::Resolved { .. } = n.kind() {
        return Level::Info;
    }
    match n.alert().severity() {
        Severity::Info => Level::Info,
        Severity::Warning => Level::Warning,
        Severity::Error => Level::Error,
        Severity::Critical => Level::Fatal,
    }
}

/// The title, `FIRING:` or `RESOLVED:` first for incidents (no emoji:
/// Sentry shows the level its own way).
fn title(n: &Notification) -> String {
    let title = n.alert().title();
    match n.kind() {
        NotificationKind::Alert => title.to_owned(),
        NotificationKind::Firing => format!("FIRING: {title}"),
        NotificationKind::Resolved { .. } => format!("RESOLVED: {title}"),
    }
}

/// The title on the first line (Sentry's issue title), then the duration,
/// the detail and the similar count; at most [`MESSAGE_MAX`] characters.
fn message(n: &Notification) -> String {
    let mut lines = vec![title(n)];
    lines.extend(n.duration_line());
    lines.extend(
        n.alert()
            .detail_text()
            .filter(|d| !d.trim().is_empty())
            .map(str::to_owned),
    );
    lines.extend(n.similar_line());
    capped(&lines.join("\n"), MESSAGE_MAX)
}

/// A panic as Sentry's `exception` value: type `panic`, the message as
/// its value, an unhandled `panic` mechanism, and the stack trace.
fn exception(report: &PanicReport) -> Exception {
    let frames: Vec<Frame> = report.frames().iter().rev().map(frame).collect();
    Exception {
        ty: "panic".to_owned(),
        value: Some(capped(report.message(), MESSAGE_MAX)),
        stacktrace: (!frames.is_empty()).then(|| Stacktrace {
            frames,
            ..Stacktrace::default()
        }),
        mechanism: Some(Mechanism {
            ty: "panic".to_owned(),
            handled: Some(false),
            ..Mechanism::default()
        }),
        ..Exception::default()
    }
}

fn frame(f: &StackFrame) -> Frame {
    let function = f.function();
    let library = [
        "std::", "core::", "alloc::", "<std::", "<core::", "<alloc::",
    ]
    .iter()
    .any(|p| function.starts_with(p));
    Frame {
        function: Some(function.to_owned()),
        filename: f
            .file()
            .map(|p| p.rsplit(['/', '\\']).next().unwrap_or(p).to_owned()),
        abs_path: f.file().map(str::to_owned),
        lineno: f.line().map(u64::from),
        colno: f.column().map(u64::from),
        // The panic hook marks its frames; the prefixes guess for others.
        in_app: f.in_app().or(library.then_some(false)),
        ..Frame::default()
    }
}

/// A label name as a Sentry tag key: letters, digits, `_`, `.`, `:` and
/// `-` (anything else becomes `_`), at most 32 characters. `None` if empty.
fn tag_key(name: &str) -> Option<String> {
    let key: String = name
        .trim()
        .chars()
        .take(TAG_KEY_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!key.is_empty()).then_some(key)
}

/// A label value as a Sentry tag value: one line, at most 200 characters.
/// `None` if empty (Sentry refuses empty values).
fn tag_value(value: &str) -> Option<String> {
    let value = value.trim().replace(['\n', '\r'], " ");
    (!value.is_empty()).then(|| capped(&value, TAG_VALUE_MAX))
}

/// At most `max` characters of `s`, ending with `…` when cut.
fn capped(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if s.chars().nth(max).is_some() => format!("{}…", &s[..end]),
        _ => s.to_owned(),
    }
}
