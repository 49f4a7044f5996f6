//! The outbox: alerts kept in a persistent [`AlertStore`] until every sink
//! has them, so a restart (or a crash, or the end of a panicking process)
//! loses none of them.
//!
//! When the alerter's store keeps an outbox ([`AlertStore::keeps_outbox`],
//! Redis does), every alert that passed dedupe is written to it before it
//! is handed to the sinks, and acknowledged per sink once that sink
//! delivered it or gave it up for good. What is left (the process stopped,
//! crashed, or was killed while a sink was down) belongs to an *owner*, the
//! process that wrote it, which renews a lease while it runs. Another
//! process sharing the store (the next one after a restart, or another
//! replica) adopts the records of an owner whose lease expired, or that
//! released it when it stopped, and delivers them within their max age.
//!
//! Delivery from the outbox is at least once: a process that dies between
//! a sink's answer and the acknowledgement leaves a record that is sent
//! again. Telegram, Slack and Discord have no idempotency key to prevent
//! that duplicate; it takes a crash in a window of milliseconds.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

use super::model::{Alert, ServiceInfo, Severity};
use super::notification::{Notification, NotificationKind};
use super::store::{AlertStore, StoreFuture};
use crate::panic::{PanicReport, StackFrame};

/// One alert in a store's outbox: what the sinks that don't have it yet
/// must still receive.
///
/// Stores keep records as they are given ([`AlertStore::outbox_put`]);
/// `body` is opaque to them.
///
/// [`AlertStore::outbox_put`]: super::AlertStore::outbox_put
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxRecord {
    /// Unique per alert.
    pub id: String,
    /// The sinks (by name) that still need it.
    pub sinks: Vec<String>,
    /// When it is given up if still undelivered.
    pub deadline: SystemTime,
    /// The notification, encoded by watchpost.
    pub body: String,
}

impl OutboxRecord {
    /// A record (for stores that rebuild them from what they keep).
    pub fn new(id: String, sinks: Vec<String>, deadline: SystemTime, body: String) -> Self {
        Self {
            id,
            sinks,
            deadline,
            body,
        }
    }
}

/// How long an outbox owner's lease lasts without renewal: a process that
/// died has its records adopted this long after its last renewal (stores
/// renew it on [`outbox_put`](super::AlertStore::outbox_put) too).
pub const OUTBOX_LEASE: Duration = Duration::from_secs(30);

pub(crate) const LEASE: Duration = OUTBOX_LEASE;

/// How often a running process renews its lease and adopts orphans.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(10);

/// A name for this process as an outbox owner: host, pid and a random
/// part (two alerters in one process are two owners).
pub(crate) fn owner_name(host: &str) -> String {
    format!("{host}:{}:{:08x}", std::process::id(), random_u32())
}

/// A fresh record id.
pub(crate) fn record_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{now:x}-{:08x}", random_u32())
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// The alerter's side of a store's outbox.
pub(crate) struct Outbox {
    store: Arc<dyn AlertStore>,
    owner: String,
    timeout: Duration,
    /// Said once: alerts are not being kept (a store that can't run the
    /// outbox, such as a Redis cluster, would otherwise go unnoticed).
    unkept: crate::loud::Once,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox of `store`, if it keeps one.
    pub(crate) fn of(
        store: &Arc<dyn AlertStore>,
        host: &str,
        timeout: Duration,
    ) -> Option<Arc<Self>> {
        store.keeps_outbox().then(|| {
            Arc::new(Self {
                store: store.clone(),
                owner: owner_name(host),
                timeout,
                unkept: crate::loud::Once::default(),
            })
        })
    }

    async fn bounded<T>(&self, what: &str, call: StoreFuture<'_, T>) -> Result<T, String> {
        let call = AssertUnwindSafe(call).catch_unwind();
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(format!("outbox {what}: {e}")),
            Ok(Err(_)) => Err(format!("outbox {what}: the store panicked")),
            Err(_) => Err(format!(
                "outbox {what}: no answer within {:?}",
                self.timeout
            )),
        }
    }

    /// Keeps `n` for `sinks` until `deadline`; its record id.
    pub(crate) async fn put(
        &self,
        n: &Notification,
        sinks: Vec<String>,
        deadline: SystemTime,
    ) -> Result<Arc<str>, String> {
        let record = OutboxRecord::new(record_id(), sinks, deadline, encode(n));
        let written = self
            .bounded("write", self.store.outbox_put(&self.owner, &record))
            .await;
        if let Err(e) = &written {
            self.unkept.say(|| {
                format!(
                    "{e}: undelivered alerts are not kept across restarts while this lasts \
                     (is the store reachable, and a standalone Redis rather than a cluster?)"
                )
            });
        }
        written?;
        Ok(record.id.into())
    }

    /// `sink` is done with the record `id`.
    pub(crate) async fn ack(&self, id: &str, sink: &str) -> Result<(), String> {
        self.bounded(
            "acknowledgement",
            self.store.outbox_ack(&self.owner, id, sink),
        )
        .await
    }

    /// Renews this owner's lease and takes what owners gone quiet left.
    pub(crate) async fn adopt(&self) -> Result<Vec<OutboxRecord>, String> {
        self.bounded("adoption", self.store.outbox_adopt(&self.owner, LEASE))
            .await
    }

    /// This owner stops: what it leaves can be adopted at once.
    pub(crate) async fn release(&self) -> Result<(), String> {
        self.bounded("release", self.store.outbox_release(&self.owner))
            .await
    }
}

/// The encoded notification. `v` is the format's version: a record a
/// later watchpost can't read is logged and dropped, not misread.
#[derive(Serialize, Deserialize)]
struct Body {
    v: u8,
    severity: String,
    title: String,
    detail: Option<String>,
    alert_key: Option<String>,
    labels: Vec<(String, String)>,
    panic: Option<PanicBody>,
    service: String,
    environment: Option<String>,
    host: String,
    version: Option<String>,
    kind: String,
    resolved_after_ms: Option<u64>,
    key: String,
    similar: u64,
    window_ms: u64,
    time_ms: u64,
    started_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct PanicBody {
    message: String,
    location: Option<String>,
    thread: String,
    frames: Vec<FrameBody>,
}

#[derive(Serialize, Deserialize)]
struct FrameBody {
    function: String,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    in_app: Option<bool>,
}

const VERSION: u8 = 1;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The notification as an outbox body.
pub(crate) fn encode(n: &Notification) -> String {
    let a = &n.alert;
    let (kind, resolved_after_ms) = match n.kind {
        NotificationKind::Alert => ("alert", None),
        NotificationKind::Firing => ("firing", None),
        NotificationKind::Resolved { duration } => ("resolved", Some(duration_ms(duration))),
    };
    let body = Body {
        v: VERSION,
        severity: a.severity().as_str().to_owned(),
        title: a.title().to_owned(),
        detail: a.detail_text().map(str::to_owned),
        alert_key: a.explicit_key().map(str::to_owned),
        labels: a
            .labels()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        panic: a.panic_report().map(|p| PanicBody {
            message: p.message().to_owned(),
            location: p.location().map(str::to_owned),
            thread: p.thread().to_owned(),
            frames: p
                .frames()
                .iter()
                .map(|f| FrameBody {
                    function: f.function().to_owned(),
                    file: f.file().map(str::to_owned),
                    line: f.line(),
                    column: f.column(),
                    in_app: f.in_app(),
                })
                .collect(),
        }),
        service: n.service.name.clone(),
        environment: n.service.environment.clone(),
        host: n.service.host.clone(),
        version: n.service.version.clone(),
        kind: kind.to_owned(),
        resolved_after_ms,
        key: n.key.clone(),
        similar: n.similar,
        window_ms: duration_ms(n.window),
        time_ms: unix_ms(n.time),
        started_ms: n.started_at.map(unix_ms),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// The notification an outbox body holds; `None` if it can't be read (a
/// newer format, a damaged record).
pub(crate) fn decode(body: &str) -> Option<Notification> {
    let b: Body = serde_json::from_str(body).ok()?;
    if b.v != VERSION {
        return None;
    }
    let severity: Severity = b.severity.parse().ok()?;
    let mut alert = Alert::new(severity, b.title);
    if let Some(detail) = b.detail {
        alert = alert.detail(detail);
    }
    if let Some(key) = b.alert_key {
        alert = alert.key(key);
    }
    for (k, v) in b.labels {
        alert = alert.label(k, v);
    }
    if let Some(p) = b.panic {
        let frames = p
            .frames
            .into_iter()
            .map(|f| StackFrame::from_parts(f.function, f.file, f.line, f.column, f.in_app))
            .collect();
        alert = alert.with_panic_report(PanicReport::new(
            p.message,
            p.location.as_deref(),
            p.thread,
            frames,
        ));
    }
    let kind = match (b.kind.as_str(), b.resolved_after_ms) {
        ("alert", _) => NotificationKind::Alert,
        ("firing", _) => NotificationKind::Firing,
        ("resolved", Some(ms)) => NotificationKind::Resolved {
            duration: Duration::from_millis(ms),
        },
        _ => return None,
    };
    let mut service = ServiceInfo::new(b.service);
    service.environment = b.environment;
    service.host = b.host;
    service.version = b.version;
    Some(Notification {
        alert,
        service: Arc::new(service),
        kind,
        key: b.key,
        similar: b.similar,
        window: Duration::from_millis(b.window_ms),
        time: from_ms(b.time_ms),
        started_at: b.started_ms.map(from_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_survives_the_round_trip() {
        let report = PanicReport::new(
            "index out of bounds",
            Some("src/main.rs:42:5"),
            "tokio-runtime-worker",
            vec![StackFrame::from_parts(
                "app::handler".into(),
                Some("src/main.rs".into()),
                Some(42),
                Some(5),
                Some(true),
            )],
        );
        let alert = Alert::critical("panic: index out of bounds")
            .detail("at src/main.rs:42:5")
            .key("panic:src/main.rs:42:5")
            .label("route", "GET /orders")
            .with_panic_report(report);
        let mut service = ServiceInfo::new("checkout-api");
        service.environment = Some("production".into());
        service.version = Some("1.4.2".into());
        let n = Notification::new(alert, Arc::new(service))
            .with_kind(NotificationKind::Resolved {
                duration: Duration::from_secs(252),
            })
            .with_similar(7);
        let back = decode(&encode(&n)).unwrap_or_else(|| panic!("not decoded"));
        assert_eq!(back.alert, n.alert);
        assert_eq!(*back.service, *n.service);
        assert_eq!(back.kind, n.kind);
        assert_eq!((back.key.as_str(), back.similar), (n.key.as_str(), 7));
        assert_eq!(unix_ms(back.time), unix_ms(n.time));
        assert_eq!(back.started_at.map(unix_ms), n.started_at.map(unix_ms));
        assert_eq!(back.headline(), n.headline());
    }

    #[test]
    fn an_unknown_format_is_not_misread() {
        assert!(decode("{}").is_none());
        assert!(decode("not json").is_none());
        let n = Notification::new(Alert::error("x"), Arc::new(ServiceInfo::new("a")));
        let newer = encode(&n).replace("\"v\":1", "\"v\":2");
        assert!(decode(&newer).is_none());
    }
}
