//! [`AlertLayer`]: a `tracing-subscriber` layer that turns `ERROR` events
//! into alerts, deduplicated by callsite.

use std::cell::Cell;
use std::error::Error;
use std::fmt::{self, Write as _};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::alerter::Alerter;
use super::model::{Alert, Severity};

/// Targets watchpost's own alert code logs under (the delivery thread and
/// the log sink): never turned into alerts.
const OWN_TARGET: &str = "watchpost::alert";
/// Longest title, in characters (what a lock screen shows, and then some).
const TITLE_MAX: usize = 200;
/// Longest field value, in characters.
const VALUE_MAX: usize = 1000;
/// Most fields listed in the detail.
const FIELDS_MAX: usize = 32;

thread_local! {
    /// Set while this thread is inside the layer, so an event raised while
    /// sending an alert can never recurse.
    static IN_LAYER: Cell<bool> = const { Cell::new(false) };
}

/// A [`tracing_subscriber::Layer`] that sends `ERROR` events (the level and
/// the targets are configurable) to an [`Alerter`], one alert per callsite
/// per dedupe window.
///
/// Available with the `tracing-layer` feature.
///
/// - **Deduplicated by callsite.** The alert's key is the event's target,
///   file and line (`tracing:my_app::db:src/db.rs:42`): stable across
///   processes and restarts, so replicas sharing an
///   [`AlertStore`](super::AlertStore) agree, and an error logged in a loop
///   sends one message per window, saying how many were suppressed.
/// - **What it says.** The first line of the event's `message` is the title
///   (cut at 200 characters); the whole message when it is longer, then the
///   other fields as `name = value` lines, the target and the location make
///   up the detail. Events bridged from the `log` crate are keyed and
///   filtered by the log record's own target, file and line.
/// - **Severity.** `ERROR` gives [`Severity::Error`], `WARN`
///   [`Severity::Warning`], anything below [`Severity::Info`]; change it
///   with [`severity`](Self::severity).
/// - **Can't loop.** Events from watchpost's alert code (any target
///   starting with `watchpost::alert`) and every event raised on the
///   alert delivery thread are ignored, so a failing sink can't alert about
///   itself.
/// - **Never blocks, never panics.** [`Alerter::send`] only queues; a
///   panicking `Debug` impl in a field is caught and the event skipped.
///
/// The layer filters on its own and never disables events for other layers
/// (a `fmt` layer next to it still sees everything).
///
/// # Examples
///
/// ```
/// use tracing_subscriber::prelude::*;
/// use watchpost::alert::{AlertLayer, Alerter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::from_env()?;
/// let subscriber = tracing_subscriber::registry()
///     .with(AlertLayer::new(alerter.clone()).targets(["my_app", "sqlx"]));
/// # let _guard = tracing::subscriber::set_default(subscriber);
/// // tracing::subscriber::set_global_default(subscriber)?;
///
/// // One alert, whatever the number of times this line runs in 5 minutes.
/// tracing::error!(target: "my_app::billing", invoice = 1042, "charge failed: card declined");
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a layer does nothing until added to a subscriber"]
pub struct AlertLayer {
    alerter: Alerter,
    min_level: Level,
    targets: Arc<[String]>,
    excluded: Arc<[String]>,
    /// Indexed by [`level_index`].
    severities: [Severity; 5],
}

impl fmt::Debug for AlertLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertLayer")
            .field("alerter", &self.alerter)
            .field("min_level", &self.min_level)
            .field("targets", &self.targets)
            .field("excluded", &self.excluded)
            .field("severities", &self.severities)
            .finish()
    }
}

impl AlertLayer {
    /// A layer that sends every `ERROR` event, from any target but
    /// watchpost's alert code, to `alerter`.
    pub fn new(alerter: Alerter) -> Self {
        Self {
            alerter,
            min_level: Level::ERROR,
            targets: Arc::from([]),
            excluded: Arc::from([]),
            severities: [
                Severity::Info,    // TRACE
                Severity::Info,    // DEBUG
                Severity::Info,    // INFO
                Severity::Warning, // WARN
                Severity::Error,   // ERROR
            ],
        }
    }

    /// The least severe level that becomes an alert (default
    /// [`Level::ERROR`]). `Level::WARN` takes warnings too.
    pub fn min_level(mut self, level: Level) -> Self {
        self.min_level = level;
        self
    }

    /// Only events whose target starts with one of these prefixes become
    /// alerts (default: any target). Prefixes match as `EnvFilter`
    /// directives do: `my_app` takes `my_app` and `my_app::db` (and
    /// `my_app_worker`; write `my_app::` to mean the modules only). Replaces
    /// the previous list.
    pub fn targets<I>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.targets = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Events whose target starts with one of these prefixes never become
    /// alerts, even if [`targets`](Self::targets) takes them. Replaces the
    /// previous list. Watchpost's own alert targets are always excluded.
    pub fn exclude_targets<I>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.excluded = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// The alert severity for events at `level` (defaults: `ERROR` →
    /// [`Severity::Error`], `WARN` → [`Severity::Warning`], below →
    /// [`Severity::Info`]). `.severity(Level::ERROR, Severity::Critical)`
    /// makes every error event critical.
    pub fn severity(mut self, level: Level, severity: Severity) -> Self {
        self.severities[level_index(level)] = severity;
        self
    }

    /// Whether events with this (effective) target are taken.
    fn takes_target(&self, target: &str) -> bool {
        if target.starts_with(OWN_TARGET) {
            return false;
        }
        if self.excluded.iter().any(|p| target.starts_with(p.as_str())) {
            return false;
        }
        self.targets.is_empty() || self.targets.iter().any(|p| target.starts_with(p.as_str()))
    }

    fn handle(&self, event: &Event<'_>) {
        let meta = event.metadata();
        // A log record bridged by tracing-log: target "log", the real target
        // and location in `log.*` fields. Filter it once they are read.
        let bridged = meta.target() == "log";
        if meta.target().starts_with(OWN_TARGET) || !bridged && !self.takes_target(meta.target()) {
            return;
        }
        let severity = self.severities[level_index(*meta.level())];
        let record = || {
            let mut fields = Fields::default();
            event.record(&mut fields);
            fields
        };
        if !bridged {
            // The callsite is the key: a duplicate is known before any
            // field is formatted, and costs the dedupe check alone.
            let key = callsite_key(meta.target(), meta.file(), meta.line().map(u64::from))
                .unwrap_or_else(|| format!("tracing:{}:{}", meta.target(), meta.name()));
            self.alerter
                .send_lazy(&key, || build_alert(meta, record(), severity));
            return;
        }
        let fields = record();
        let target = fields.log_target.as_deref().unwrap_or(meta.target());
        if !self.takes_target(target) {
            return;
        }
        self.alerter.send(build_alert(meta, fields, severity));
    }
}

impl<S: Subscriber> Layer<S> for AlertLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // `Level` orders verbosity: ERROR is the smallest.
        if *event.metadata().level() > self.min_level {
            return;
        }
        if super::worker::on_delivery_thread() || IN_LAYER.with(Cell::get) {
            return;
        }
        IN_LAYER.with(|f| f.set(true));
        // A panicking `Debug` impl in a field must not take the caller with
        // it: skip the event.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| self.handle(event)));
        IN_LAYER.with(|f| f.set(false));
    }
}

const fn level_index(level: Level) -> usize {
    match level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// An event's fields, formatted.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    others: Vec<(&'static str, String)>,
    omitted: usize,
    log_target: Option<String>,
    log_file: Option<String>,
    log_line: Option<u64>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else if self.others.len() < FIELDS_MAX {
            let mut text = String::new();
            let _ = text.write_fmt(value);
            self.others.push((field.name(), truncate(text, VALUE_MAX)));
        } else {
            self.omitted += 1;
        }
    }

    /// Takes tracing-log's `log.*` fields; `true` if `field` was one.
    fn log_field(&mut self, field: &Field, value: &str) -> bool {
        match field.name() {
            "log.target" => self.log_target = Some(value.to_owned()),
            "log.file" => self.log_file = Some(value.to_owned()),
            "log.module_path" => {}
            _ => return false,
        }
        true
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.log_field(field, value) {
            self.push(field, format_args!("{value}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "log.line" {
            self.log_line = Some(value);
        } else {
            self.push(field, format_args!("{value}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        // The error and its causes: "query failed: connection refused".
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            if text.len() > VALUE_MAX {
                break;
            }
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.push(field, format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format_args!("{value:?}"));
    }
}

fn build_alert(meta: &Metadata<'_>, fields: Fields, severity: Severity) -> Alert {
    let bridged = fields.log_target.is_some();
    let target = fields.log_target.as_deref().unwrap_or(meta.target());
    let (file, line) = if bridged {
        (fields.log_file.as_deref(), fields.log_line)
    } else {
        (meta.file(), meta.line().map(u64::from))
    };
    let location = match (file, line) {
        (Some(file), Some(line)) => Some(format!("{file}:{line}")),
        _ => None,
    };

    let message = fields.message.as_deref().map(str::trim).unwrap_or("");
    let first_line = message.lines().next().unwrap_or("").trim();
    let title = if !first_line.is_empty() {
        first_line.to_owned()
    } else if let Some((name, value)) = fields.others.first() {
        format!("{target}: {name} = {value}")
    } else {
        format!("{} event in {target}", meta.level())
    };
    let cut = title.chars().nth(TITLE_MAX).is_some();
    let title = truncate(title, TITLE_MAX);

    let mut detail = String::new();
    // The whole message, when the title doesn't hold it.
    if message.len() > first_line.len() || cut && !first_line.is_empty() {
        detail.push_str(&truncate(message.to_owned(), VALUE_MAX * 4));
        detail.push('\n');
    }
    for (name, value) in &fields.others {
        let _ = writeln!(detail, "{name} = {value}");
    }
    if fields.omitted > 0 {
        let _ = writeln!(detail, "(+{} more fields)", fields.omitted);
    }
    let _ = write!(detail, "target = {target}");
    if let Some(location) = &location {
        let _ = write!(detail, "\nlocation = {location}");
    }

    // The callsite, stable across processes (never a pointer).
    let key = match callsite_key(target, file, line) {
        Some(key) => key,
        None if !bridged => format!("tracing:{target}:{}", meta.name()),
        // A log record without a location: its message is all there is.
        None => format!("tracing:{target}:{}", super::fingerprint(&title)),
    };
    Alert::new(severity, title).detail(detail).key(key)
}

/// `tracing:{target}:{file}:{line}`, the dedupe key of an event with a
/// location.
fn callsite_key(target: &str, file: Option<&str>, line: Option<u64>) -> Option<String> {
    match (file, line) {
        (Some(file), Some(line)) => Some(format!("tracing:{target}:{file}:{line}")),
        _ => None,
    }
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
fn truncate(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_on_char_boundaries() {
        assert_eq!(truncate("héllo".to_owned(), 2), "hé…");
        assert_eq!(truncate("hé".to_owned(), 2), "hé");
        assert_eq!(truncate(String::new(), 0), "");
    }

    #[test]
    fn level_indexes_are_distinct() {
        let levels = [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ];
        for (i, level) in levels.into_iter().enumerate() {
            assert_eq!(level_index(level), i);
        }
    }
}
