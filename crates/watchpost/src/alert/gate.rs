//! The in-process dedupe and incident state, consulted on the caller's
//! thread: cheap, never blocks on I/O, bounded.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

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
    window: Duration,
    max_keys_per_shard: usize,
}

#[derive(Debug, Default)]
struct Shard {
    dedupe: HashMap<String, Window>,
    incidents: HashMap<String, Incident>,
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
            window,
            max_keys_per_shard: (max_keys / SHARDS).max(1),
        }
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        // FNV-1a over at most 32 bytes: enough to spread keys over 8 shards.
        let mut h: u32 = 0x811c_9dc5;
        for &b in key.as_bytes().iter().take(32) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let i = (h as usize) % SHARDS;
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an alert with `key` at `now`.
    pub(crate) fn check(&self, key: &str, now: Instant) -> Seen {
        let window = self.window;
        let mut shard = self.shard(key);
        if let Some(w) = shard.dedupe.get_mut(key) {
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
                .retain(|_, w| now.saturating_duration_since(w.since) < window);
            if shard.dedupe.len() >= self.max_keys_per_shard {
                // Every key is live: forget the oldest half rather than grow.
                // Those keys may alert again early; none is lost.
                let mut ages: Vec<Instant> = shard.dedupe.values().map(|w| w.since).collect();
                ages.sort_unstable();
                if let Some(&cut) = ages.get(ages.len() / 2) {
                    shard.dedupe.retain(|_, w| w.since > cut);
                }
            }
        }
        shard.dedupe.insert(
            key.to_owned(),
            Window {
                since: now,
                suppressed: 0,
            },
        );
        Seen::Deliver { similar: 0 }
    }

    /// Opens the incident `key`. `false` if it is already open.
    pub(crate) fn open(&self, key: &str, alert: &Alert, at: SystemTime) -> bool {
        let mut shard = self.shard(key);
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
        self.shard(key).incidents.remove(key)
    }

    /// Whether the incident `key` is open.
    pub(crate) fn is_open(&self, key: &str) -> bool {
        self.shard(key).incidents.contains_key(key)
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
