//! The in-process dedupe and incident state, consulted on the caller's
//! thread: cheap, never blocks on I/O, bounded.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hashbrown::HashTable;

use super::model::Alert;

const SHARDS: usize = 8;

/// What `send` should do with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Deliver it, mentioning `similar` suppressed ones.
    Deliver { similar: u64 },
    /// Suppressed and counted.
    Suppressed,
}

#[derive(Debug)]
pub(crate) struct Gate {
    shards: [Mutex<Shard>; SHARDS],
    hasher: RandomState,
    window: Duration,
    max_keys_per_shard: usize,
}

/// A key is hashed once per check: the hash picks the shard (from its
/// middle bits) and the slot (low bits and top 7 bits, as hashbrown uses
/// them).
#[derive(Default)]
struct Shard {
    dedupe: HashTable<(String, Window)>,
    incidents: HashMap<String, Incident>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("dedupe", &self.dedupe.len())
            .field("incidents", &self.incidents.len())
            .finish()
    }
}

#[derive(Debug)]
struct Window {
    since: Instant,
    suppressed: u64,
}

#[derive(Debug)]
pub(crate) struct Incident {
    pub(crate) alert: Alert,
    pub(crate) started_at: SystemTime,
}

impl Gate {
    pub(crate) fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            shards: Default::default(),
            hasher: RandomState::new(),
            window,
            max_keys_per_shard: (max_keys / SHARDS).max(1),
        }
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        self.shards[((hash >> 32) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an alert with `key` at `now`.
    pub(crate) fn check(&self, key: &str, now: Instant) -> Seen {
        let window = self.window;
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        if let Some((_, w)) = shard.dedupe.find_mut(hash, |(k, _)| k == key) {
            if now.saturating_duration_since(w.since) < window {
                w.suppressed = w.suppressed.saturating_add(1);
                return Seen::Suppressed;
            }
            let similar = w.suppressed;
            *w = Window {
                since: now,
                suppressed: 0,
            };
            return Seen::Deliver { similar };
        }
        if shard.dedupe.len() >= self.max_keys_per_shard {
            shard
                .dedupe
                .retain(|(_, w)| now.saturating_duration_since(w.since) < window);
            if shard.dedupe.len() >= self.max_keys_per_shard {
                // Every key is live: forget the oldest half rather than grow.
                // Those keys may alert again early; none is lost.
                let mut ages: Vec<Instant> = shard.dedupe.iter().map(|(_, w)| w.since).collect();
                if !ages.is_empty() {
                    let mid = ages.len() / 2;
                    let (_, &mut cut, _) = ages.select_nth_unstable(mid);
                    shard.dedupe.retain(|(_, w)| w.since > cut);
                }
            }
        }
        let window = Window {
            since: now,
            suppressed: 0,
        };
        shard
            .dedupe
            .insert_unique(hash, (key.to_owned(), window), |(k, _)| {
                self.hasher.hash_one(k)
            });
        Seen::Deliver { similar: 0 }
    }

    /// Opens the incident `key`. `false` if it is already open.
    pub(crate) fn open(&self, key: &str, alert: &Alert, at: SystemTime) -> bool {
        let mut shard = self.shard(self.hasher.hash_one(key));
        if shard.incidents.contains_key(key) {
            return false;
        }
        shard.incidents.insert(
            key.to_owned(),
            Incident {
                alert: alert.clone(),
                started_at: at,
            },
        );
        true
    }

    /// Closes the incident `key`, if open.
    pub(crate) fn close(&self, key: &str) -> Option<Incident> {
        self.shard(self.hasher.hash_one(key)).incidents.remove(key)
    }

    /// Whether the incident `key` is open.
    pub(crate) fn is_open(&self, key: &str) -> bool {
        self.shard(self.hasher.hash_one(key))
            .incidents
            .contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(300);

    #[test]
    fn a_retry_loop_gives_two_messages_in_ten_minutes() {
        // 800 alerts, one every 750 ms: ten minutes.
        let gate = Gate::new(W, 1000);
        let t0 = Instant::now();
        let deliveries: Vec<u64> = (0..800u64)
            .filter_map(
                |i| match gate.check("k", t0 + Duration::from_millis(i * 750)) {
                    Seen::Deliver { similar } => Some(similar),
                    Seen::Suppressed => None,
                },
            )
            .collect();
        assert_eq!(deliveries, [0, 399]);
    }

    #[test]
    fn keys_are_independent() {
        let gate = Gate::new(W, 1000);
        let t0 = Instant::now();
        assert_eq!(gate.check("a", t0), Seen::Deliver { similar: 0 });
        assert_eq!(gate.check("b", t0), Seen::Deliver { similar: 0 });
        assert_eq!(gate.check("a", t0), Seen::Suppressed);
    }

    #[test]
    fn memory_stays_bounded() {
        let gate = Gate::new(W, 80);
        let t0 = Instant::now();
        for i in 0..10_000 {
            let _ = gate.check(&format!("key-{i}"), t0 + Duration::from_millis(i));
        }
        let total: usize = gate
            .shards
            .iter()
            .map(|s| s.lock().unwrap().dedupe.len())
            .sum();
        assert!(total <= 80, "{total} keys kept");
    }

    #[test]
    fn incidents_open_once_and_close_once() {
        let gate = Gate::new(W, 1000);
        let a = Alert::warning("Queue depth 1200");
        assert!(gate.open("q", &a, SystemTime::UNIX_EPOCH));
        assert!(!gate.open("q", &a, SystemTime::UNIX_EPOCH));
        assert!(gate.is_open("q"));
        assert_eq!(gate.close("q").map(|i| i.alert), Some(a));
        assert!(gate.close("q").is_none());
        assert!(gate.close("never").is_none());
    }
}
