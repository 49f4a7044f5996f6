//! The shared state behind dedupe and incidents.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::outbox::OutboxRecord;

/// The future an [`AlertStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the store says about an alert the process wants to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// Deliver it; `similar` alerts with this key were suppressed (by every
    /// process sharing the store) since the last delivery.
    Deliver {
        /// Suppressed alerts to mention in the message.
        similar: u64,
    },
    /// Another process delivered this key inside the window; the store
    /// counted this one.
    Suppressed,
}

/// Dedupe and incident state, shared by every [`Alerter`](super::Alerter)
/// that should count as one.
///
/// Dedupe runs in two steps. The `Alerter` first decides on the caller's
/// thread, with its own in-process state (so a hot loop costs a few hundred
/// nanoseconds per `send` and never fills the queue). What gets past that
/// step reaches the store, on the delivery thread: a store shared by several
/// replicas (Redis, in `watchpost-redis`) lets one of them deliver and counts
/// the others' alerts as suppressed. The default, [`MemoryStore`], is
/// in-process; share one `Arc<MemoryStore>` between alerters to make them
/// agree.
///
/// Methods run on the delivery thread's runtime and may do I/O. An error
/// fails open: the alert is delivered, and the error logged (at most once a
/// minute).
pub trait AlertStore: Send + Sync + fmt::Debug + 'static {
    /// Claims the right to deliver `key`, raised at `at`, for `window`.
    /// `similar` is how many alerts with this key the calling process
    /// suppressed since it last delivered one; the store adds them to its
    /// count whatever it answers.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        at: SystemTime,
        window: Duration,
        similar: u64,
    ) -> StoreFuture<'a, Claim>;

    /// Opens the incident `key`, started at `at`. `true` if this call
    /// opened it (send "firing"); `false` if it was already open.
    fn open_incident<'a>(&'a self, key: &'a str, at: SystemTime) -> StoreFuture<'a, bool>;

    /// Closes the incident `key`. `Some(started_at)` if this call closed an
    /// open incident (send "resolved"); `None` if none was open.
    fn close_incident<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>>;

    /// Whether this store keeps an outbox: alerts not yet delivered to
    /// every sink, kept across restarts and handed to the next process
    /// (see [`OutboxRecord`]). Default `false` (the methods below are then
    /// never called).
    fn keeps_outbox(&self) -> bool {
        false
    }

    /// Keeps `record`, owned by `owner`, until every sink in it is
    /// acknowledged.
    fn outbox_put<'a>(&'a self, owner: &'a str, record: &'a OutboxRecord) -> StoreFuture<'a, ()> {
        let _ = (owner, record);
        Box::pin(async { Ok(()) })
    }

    /// `sink` has the record `id` (or gave it up for good): forget it for
    /// that sink, and the record once no sink is left.
    fn outbox_ack<'a>(&'a self, owner: &'a str, id: &'a str, sink: &'a str) -> StoreFuture<'a, ()> {
        let _ = (owner, id, sink);
        Box::pin(async { Ok(()) })
    }

    /// Renews `owner`'s lease for `lease`, and makes `owner` the owner of
    /// the records of every owner whose lease expired or was released,
    /// returning them. Two processes adopting at once never get the same
    /// record.
    fn outbox_adopt<'a>(
        &'a self,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<OutboxRecord>> {
        let _ = (owner, lease);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// `owner` stops: its remaining records can be adopted at once.
    fn outbox_release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()> {
        let _ = owner;
        Box::pin(async { Ok(()) })
    }
}

/// An [`AlertStore`] failure (the backend is unreachable, say).
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error with this message (lowercase, no trailing period, no
    /// secrets: it is logged).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The in-process [`AlertStore`]: the default.
///
/// Entries expire with their window. When the map reaches 10,000 keys it is
/// swept, and if half of them are still live, the half that expires first
/// is forgotten: memory stays bounded under a flood of distinct alerts.
///
/// # Examples
///
/// Two alerters that act as one (as two replicas would with a shared
/// store):
///
/// ```
/// use std::sync::Arc;
/// use watchpost::alert::{Alerter, MemoryStore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(MemoryStore::new());
/// let a = Alerter::builder().store(store.clone()).build()?;
/// let b = Alerter::builder().store(store).build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    dedupe: HashMap<String, DedupeEntry>,
    incidents: HashMap<String, SystemTime>,
}

#[derive(Debug)]
struct DedupeEntry {
    until: SystemTime,
    suppressed: u64,
}

const SWEEP_AT: usize = 10_000;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the count of alerts with `key` this store suppressed since its
    /// last delivery of one (and resets it to 0).
    ///
    /// For a shared store that falls back to a `MemoryStore` while its
    /// backend is down: once the backend is back, what the fallback counted
    /// is handed on, so the next message still says how many were
    /// suppressed.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use watchpost::alert::{AlertStore, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// let (now, window) = (SystemTime::now(), Duration::from_secs(300));
    /// store.claim("db down", now, window, 0).await?; // delivered
    /// store.claim("db down", now, window, 2).await?; // suppressed: 2 + this one
    /// assert_eq!(store.take_suppressed("db down"), 3);
    /// assert_eq!(store.take_suppressed("db down"), 0);
    /// # Ok(()) }
    /// ```
    pub fn take_suppressed(&self, key: &str) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .dedupe
            .get_mut(key)
            .map_or(0, |entry| std::mem::take(&mut entry.suppressed))
    }

    fn claim_now(&self, key: &str, at: SystemTime, window: Duration, similar: u64) -> Claim {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.dedupe.len() >= SWEEP_AT && !state.dedupe.contains_key(key) {
            state.dedupe.retain(|_, e| e.until > at);
            if state.dedupe.len() >= SWEEP_AT / 2 {
                // Still full of live keys (a flood of distinct alerts): forget
                // the half that expires first, so memory stays bounded and the
                // next sweep is thousands of inserts away. Those keys may
                // alert again early; none is lost.
                let mut ends: Vec<SystemTime> = state.dedupe.values().map(|e| e.until).collect();
                let middle = ends.len() / 2;
                let (_, cut, _) = ends.select_nth_unstable(middle);
                let cut = *cut;
                state.dedupe.retain(|_, e| e.until > cut);
            }
        }
        let until = at.checked_add(window).unwrap_or(at);
        match state.dedupe.get_mut(key) {
            Some(entry) if entry.until > at => {
                entry.suppressed = entry.suppressed.saturating_add(similar).saturating_add(1);
                Claim::Suppressed
            }
            Some(entry) => {
                let similar = entry.suppressed.saturating_add(similar);
                *entry = DedupeEntry {
                    until,
                    suppressed: 0,
                };
                Claim::Deliver { similar }
            }
            None => {
                state.dedupe.insert(
                    key.to_owned(),
                    DedupeEntry {
                        until,
                        suppressed: 0,
                    },
                );
                Claim::Deliver { similar }
            }
        }
    }
}

impl AlertStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        at: SystemTime,
        window: Duration,
        similar: u64,
    ) -> StoreFuture<'a, Claim> {
        let claim = self.claim_now(key, at, window, similar);
        Box::pin(async move { Ok(claim) })
    }

    fn open_incident<'a>(&'a self, key: &'a str, at: SystemTime) -> StoreFuture<'a, bool> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let opened = !state.incidents.contains_key(key);
        if opened {
            state.incidents.insert(key.to_owned(), at);
        }
        Box::pin(async move { Ok(opened) })
    }

    fn close_incident<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let started = state.incidents.remove(key);
        Box::pin(async move { Ok(started) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: StoreFuture<'_, T>) -> T {
        futures_util::FutureExt::now_or_never(f)
            .expect("memory store futures are ready")
            .expect("memory store never fails")
    }

    #[test]
    fn one_claim_per_window_counts_the_rest() {
        let store = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let w = Duration::from_secs(300);
        assert_eq!(
            block(store.claim("k", t0, w, 0)),
            Claim::Deliver { similar: 0 }
        );
        assert_eq!(
            block(store.claim("k", t0 + Duration::from_secs(1), w, 0)),
            Claim::Suppressed
        );
        assert_eq!(
            block(store.claim("k", t0 + Duration::from_secs(2), w, 3)),
            Claim::Suppressed
        );
        // 1 + (3 + 1) elsewhere, plus 2 suppressed locally by the caller.
        assert_eq!(
            block(store.claim("k", t0 + w, w, 2)),
            Claim::Deliver { similar: 7 }
        );
        assert_eq!(
            block(store.claim("other", t0, w, 0)),
            Claim::Deliver { similar: 0 }
        );
    }

    #[test]
    fn incidents_open_and_close_once() {
        let store = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH;
        assert!(block(store.open_incident("db", t0)));
        assert!(!block(store.open_incident("db", t0)));
        assert_eq!(block(store.close_incident("db")), Some(t0));
        assert_eq!(block(store.close_incident("db")), None);
    }

    #[test]
    fn a_flood_of_live_keys_stays_bounded() {
        let store = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH;
        let w = Duration::from_secs(3600);
        for i in 0..100_000u64 {
            let at = t0 + Duration::from_millis(i);
            block(store.claim(&i.to_string(), at, w, 0));
        }
        let len = store.state.lock().unwrap().dedupe.len();
        assert!(len <= SWEEP_AT, "{len} keys kept");
        // The newest keys are the ones kept.
        let newest = t0 + Duration::from_millis(99_999);
        assert_eq!(block(store.claim("99999", newest, w, 0)), Claim::Suppressed);
    }

    #[test]
    fn expired_entries_are_swept() {
        let store = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH;
        let w = Duration::from_secs(1);
        for i in 0..SWEEP_AT {
            block(store.claim(&i.to_string(), t0, w, 0));
        }
        block(store.claim("new", t0 + Duration::from_secs(2), w, 0));
        let len = store.state.lock().unwrap().dedupe.len();
        assert_eq!(len, 1);
    }
}
