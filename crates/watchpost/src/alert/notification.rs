//! What a sink delivers: an alert with its context, ready to render.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::model::{Alert, ServiceInfo};

/// Which message this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotificationKind {
    /// A one-off alert from [`Alerter::send`](super::Alerter::send).
    Alert,
    /// An incident opened by [`Alerter::fire`](super::Alerter::fire).
    Firing,
    /// An incident closed by [`Alerter::resolve`](super::Alerter::resolve).
    Resolved {
        /// How long the incident lasted.
        duration: Duration,
    },
}

/// An alert on its way to the sinks, with the service it comes from, its
/// dedupe key, what kind of message it is and how many similar alerts were
/// suppressed before it.
///
/// Sinks render it with the accessors below; [`headline`](Self::headline),
/// [`context_line`](Self::context_line) and the other `*_line` methods give
/// the same wording in every sink (title first, for the lock screen).
#[derive(Debug, Clone)]
pub struct Notification {
    pub(crate) alert: Alert,
    pub(crate) service: Arc<ServiceInfo>,
    pub(crate) kind: NotificationKind,
    pub(crate) key: String,
    pub(crate) similar: u64,
    pub(crate) window: Duration,
    pub(crate) time: SystemTime,
    pub(crate) started_at: Option<SystemTime>,
}

impl Notification {
    /// A notification as the [`Alerter`](super::Alerter) would build it, for
    /// testing a custom [`Sink`](super::Sink).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use watchpost::alert::{Alert, Notification, NotificationKind, ServiceInfo};
    ///
    /// let n = Notification::new(Alert::error("Disk full"), Arc::new(ServiceInfo::new("api")));
    /// assert_eq!(n.kind(), NotificationKind::Alert);
    /// assert!(n.headline().ends_with("Disk full"));
    /// ```
    pub fn new(alert: Alert, service: Arc<ServiceInfo>) -> Self {
        let key = alert.dedupe_key().into_owned();
        Self {
            alert,
            service,
            kind: NotificationKind::Alert,
            key,
            similar: 0,
            window: Duration::from_secs(300),
            time: SystemTime::now(),
            started_at: None,
        }
    }

    /// Makes this notification an incident message of the given kind
    /// (for testing sinks).
    #[must_use]
    pub fn with_kind(mut self, kind: NotificationKind) -> Self {
        if let NotificationKind::Resolved { duration } = kind {
            self.started_at = self.time.checked_sub(duration);
        } else if kind == NotificationKind::Firing {
            self.started_at = Some(self.time);
        }
        self.kind = kind;
        self
    }

    /// Sets how many similar alerts were suppressed before this one
    /// (for testing sinks).
    #[must_use]
    pub fn with_similar(mut self, similar: u64) -> Self {
        self.similar = similar;
        self
    }

    /// The alert.
    pub fn alert(&self) -> &Alert {
        &self.alert
    }

    /// The service the alert comes from.
    pub fn service(&self) -> &ServiceInfo {
        &self.service
    }

    /// Which message this is.
    pub fn kind(&self) -> NotificationKind {
        self.kind
    }

    /// The dedupe (or incident) key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How many alerts with this key were suppressed since the last one
    /// delivered.
    pub fn similar(&self) -> u64 {
        self.similar
    }

    /// The dedupe window those suppressed alerts fell in.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// When the alert was raised (for `Resolved`, when it was resolved).
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// When the incident started (`Firing` and `Resolved` only).
    pub fn started_at(&self) -> Option<SystemTime> {
        self.started_at
    }

    /// The first line: severity emoji (✅ when resolved), `FIRING:` or
    /// `RESOLVED:` for incidents, then the title.
    pub fn headline(&self) -> String {
        let title = self.alert.title();
        match self.kind {
            NotificationKind::Alert => format!("{} {title}", self.alert.severity().emoji()),
            NotificationKind::Firing => {
                format!("{} FIRING: {title}", self.alert.severity().emoji())
            }
            NotificationKind::Resolved { .. } => format!("✅ RESOLVED: {title}"),
        }
    }

    /// Where it comes from: `error · checkout-api · production · web-1 · v1.4.2`.
    pub fn context_line(&self) -> String {
        let s = &self.service;
        let mut line = format!("{} · {}", self.alert.severity(), s.name);
        if let Some(env) = &s.environment {
            line.push_str(" · ");
            line.push_str(env);
        }
        line.push_str(" · ");
        line.push_str(&s.host);
        if let Some(version) = &s.version {
            line.push_str(" · v");
            line.push_str(version.strip_prefix('v').unwrap_or(version));
        }
        line
    }

    /// `lasted 4m 12s` for a resolved incident.
    pub fn duration_line(&self) -> Option<String> {
        match self.kind {
            NotificationKind::Resolved { duration } => {
                Some(format!("lasted {}", format_duration(duration)))
            }
            _ => None,
        }
    }

    /// `(+12 similar in the last 5m)` when alerts were suppressed before
    /// this one.
    pub fn similar_line(&self) -> Option<String> {
        (self.similar > 0).then(|| {
            format!(
                "(+{} similar in the last {})",
                self.similar,
                format_duration(self.window)
            )
        })
    }

    /// The labels as `name=value` pairs joined by spaces, if any.
    pub fn labels_line(&self) -> Option<String> {
        let mut labels = self.alert.labels().peekable();
        labels.peek()?;
        Some(
            labels
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// The whole message as plain text, one part per line: headline,
    /// context, duration, detail, labels, similar count.
    pub fn to_plain_text(&self) -> String {
        let mut lines = vec![self.headline(), self.context_line()];
        lines.extend(self.duration_line());
        lines.extend(self.alert.detail_text().map(str::to_owned));
        lines.extend(self.labels_line());
        lines.extend(self.similar_line());
        lines.join("\n")
    }
}

/// A duration the way people say it: `850ms`, `42s`, `5m`, `4m 12s`,
/// `3h 5m`, `2d 4h`. Two units at most.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::with_capacity(2);
    let mut rest = secs;
    for (size, name) in units {
        if rest >= size {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
            if parts.len() == 2 {
                break;
            }
        } else if !parts.is_empty() {
            break;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(252)), "4m 12s");
        assert_eq!(
            format_duration(Duration::from_secs(3 * 3600 + 5 * 60 + 9)),
            "3h 5m"
        );
        assert_eq!(format_duration(Duration::from_secs(3600 + 9)), "1h");
        assert_eq!(
            format_duration(Duration::from_secs(2 * 86_400 + 4 * 3600)),
            "2d 4h"
        );
    }

    #[test]
    fn plain_text_puts_the_title_first() {
        let mut service = ServiceInfo::new("api");
        service.environment = Some("production".into());
        service.host = "web-1".into();
        service.version = Some("1.4.2".into());
        let n = Notification::new(
            Alert::error("Payment failed")
                .detail("card declined")
                .label("route", "/pay"),
            Arc::new(service),
        )
        .with_similar(12);
        assert_eq!(
            n.to_plain_text(),
            "🔴 Payment failed\nerror · api · production · web-1 · v1.4.2\ncard declined\nroute=/pay\n(+12 similar in the last 5m)"
        );
        let resolved = n.with_kind(NotificationKind::Resolved {
            duration: Duration::from_secs(252),
        });
        assert!(resolved
            .to_plain_text()
            .starts_with("✅ RESOLVED: Payment failed\n"));
        assert_eq!(resolved.duration_line().as_deref(), Some("lasted 4m 12s"));
    }
}
