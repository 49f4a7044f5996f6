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

/// A key that just became hot: it was seen `count` times within `span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Looping {
    pub(crate) count: u64,
    pub(crate) span: Duration,
}

/// The looping-alert rule: more than `threshold` occurrences of one key
/// within `window` (tracked in [`HOT_SLOTS`] slots) make it hot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HotRule {
    pub(crate) threshold: u64,
    pub(crate) window: Duration,
}

/// Slots of the looping window: 5-minute slots for the default hour.
const HOT_SLOTS: usize = 12;
/// A hot key cools down when its pace over the last `COOL_SLOTS` slots
/// (15 minutes of the default hour), scaled to the window, is under half
/// the threshold.
const COOL_SLOTS: usize = 3;

#[derive(Debug)]
pub(crate) struct Gate {
    shards: [Mutex<Shard>; SHARDS],
    hasher: RandomState,
    window: Duration,
    max_keys_per_shard: usize,
    hot: Option<Hot>,
}

#[derive(Debug)]
struct Hot {
    rule: HotRule,
    origin: Instant,
    slot_ms: u64,
    /// The keys that are hot now (few: one per looping error).
    keys: Mutex<Vec<String>>,
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
    counts: Counts,
}

/// Occurrences of one key per slot of the looping window, a ring.
#[derive(Debug, Default)]
struct Counts {
    /// The slot number the ring was last moved to.
    slot: u64,
    per_slot: [u32; HOT_SLOTS],
    total: u64,
    hot: bool,
}

impl Counts {
    /// Moves the ring to slot `now`, forgetting slots that left the window.
    fn roll(&mut self, now: u64) {
        if now <= self.slot {
            return;
        }
        let gap = (now - self.slot).min(HOT_SLOTS as u64);
        for i in 1..=gap {
            let index = ((self.slot + i) % HOT_SLOTS as u64) as usize;
            self.total -= u64::from(self.per_slot[index]);
            self.per_slot[index] = 0;
        }
        self.slot = now;
    }

    fn add(&mut self, now: u64) {
        self.roll(now);
        let index = (now % HOT_SLOTS as u64) as usize;
        self.per_slot[index] = self.per_slot[index].saturating_add(1);
        self.total += 1;
    }

    /// Slots from the oldest one with occurrences to the current one.
    fn span(&self) -> u64 {
        (0..HOT_SLOTS as u64)
            .rev()
            .find(|age| {
                let index = ((self.slot + HOT_SLOTS as u64 - age) % HOT_SLOTS as u64) as usize;
                self.per_slot[index] > 0
            })
            .map_or(1, |age| age + 1)
    }

    /// Occurrences in the last `COOL_SLOTS` slots.
    fn recent(&self) -> u64 {
        (0..COOL_SLOTS as u64)
            .map(|age| {
                let index = ((self.slot + HOT_SLOTS as u64 - age) % HOT_SLOTS as u64) as usize;
                u64::from(self.per_slot[index])
            })
            .sum()
    }
}

#[derive(Debug)]
pub(crate) struct Incident {
    pub(crate) alert: Alert,
    pub(crate) started_at: SystemTime,
}

impl Gate {
    pub(crate) fn new(
        window: Duration,
        max_keys: usize,
        hot: Option<HotRule>,
        origin: Instant,
    ) -> Self {
        Self {
            shards: Default::default(),
            hasher: RandomState::new(),
            window,
            max_keys_per_shard: (max_keys / SHARDS).max(1),
            hot: hot.map(|rule| Hot {
                rule,
                origin,
                slot_ms: u64::try_from(rule.window.as_millis() / HOT_SLOTS as u128)
                    .unwrap_or(u64::MAX)
                    .max(1),
                keys: Mutex::new(Vec::new()),
            }),
        }
    }

    fn hot_slot(hot: &Hot, now: Instant) -> u64 {
        let since = now.saturating_duration_since(hot.origin);
        let ms = since
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(since.subsec_millis()));
        ms / hot.slot_ms
    }

    /// Counts one occurrence of a key; `Some` when that makes it hot.
    fn count(&self, counts: &mut Counts, key: &str, now: Instant) -> Option<Looping> {
        let hot = self.hot.as_ref()?;
        counts.add(Self::hot_slot(hot, now));
        if counts.hot || counts.total <= hot.rule.threshold {
            return None;
        }
        counts.hot = true;
        hot.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key.to_owned());
        Some(Looping {
            count: counts.total,
            span: Duration::from_millis(hot.slot_ms.saturating_mul(counts.span())),
        })
    }

    /// The hot keys that cooled down at `now` (their pace over the last
    /// quarter of the looping window, scaled to the window, fell under
    /// half the threshold), or were forgotten. They are no longer hot.
    pub(crate) fn cooled(&self, now: Instant) -> Vec<String> {
        let Some(hot) = &self.hot else {
            return Vec::new();
        };
        // Take the list, then release it: `check` locks a shard and then
        // the list, so holding the list while locking shards could deadlock.
        let keys = std::mem::take(&mut *hot.keys.lock().unwrap_or_else(PoisonError::into_inner));
        if keys.is_empty() {
            return Vec::new();
        }
        let slot = Self::hot_slot(hot, now);
        let mut cooled = Vec::new();
        let mut still_hot = Vec::new();
        for key in keys {
            let hash = self.hasher.hash_one(key.as_str());
            let mut shard = self.shard(hash);
            let hot_now = match shard.dedupe.find_mut(hash, |(k, _)| *k == key) {
                Some((_, w)) => {
                    w.counts.roll(slot);
                    let pace = w.counts.recent() * (HOT_SLOTS / COOL_SLOTS) as u64;
                    let hot_now = pace * 2 >= hot.rule.threshold;
                    w.counts.hot = hot_now;
                    hot_now
                }
                None => false,
            };
            drop(shard);
            if hot_now {
                still_hot.push(key);
            } else {
                cooled.push(key);
            }
        }
        hot.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(still_hot);
        cooled
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        self.shards[((hash >> 32) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an alert with `key` at `now`: whether to deliver it, and
    /// whether the key just became hot (looping).
    pub(crate) fn check(&self, key: &str, now: Instant) -> (Seen, Option<Looping>) {
        let window = self.window;
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        if let Some((_, w)) = shard.dedupe.find_mut(hash, |(k, _)| k == key) {
            let looping = self.count(&mut w.counts, key, now);
            if now.saturating_duration_since(w.since) < window {
                w.suppressed = w.suppressed.saturating_add(1);
                return (Seen::Suppressed, looping);
            }
            let similar = w.suppressed;
            w.since = now;
            w.suppressed = 0;
            return (Seen::Deliver { similar }, looping);
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
        let mut window = Window {
            since: now,
            suppressed: 0,
            counts: Counts::default(),
        };
        let looping = self.count(&mut window.counts, key, now);
        shard
            .dedupe
            .insert_unique(hash, (key.to_owned(), window), |(k, _)| {
                self.hasher.hash_one(k)
            });
        (Seen::Deliver { similar: 0 }, looping)
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
        let t0 = Instant::now();
        let gate = Gate::new(W, 1000, None, t0);
        let deliveries: Vec<u64> = (0..800u64)
            .filter_map(
                |i| match gate.check("k", t0 + Duration::from_millis(i * 750)).0 {
                    Seen::Deliver { similar } => Some(similar),
                    Seen::Suppressed => None,
                },
            )
            .collect();
        assert_eq!(deliveries, [0, 399]);
    }

    #[test]
    fn keys_are_independent() {
        let t0 = Instant::now();
        let gate = Gate::new(W, 1000, None, t0);
        assert_eq!(gate.check("a", t0).0, Seen::Deliver { similar: 0 });
        assert_eq!(gate.check("b", t0).0, Seen::Deliver { similar: 0 });
        assert_eq!(gate.check("a", t0).0, Seen::Suppressed);
    }

    #[test]
    fn memory_stays_bounded() {
        let t0 = Instant::now();
        let gate = Gate::new(W, 80, None, t0);
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
        let gate = Gate::new(W, 1000, None, Instant::now());
        let a = Alert::warning("Queue depth 1200");
        assert!(gate.open("q", &a, SystemTime::UNIX_EPOCH));
        assert!(!gate.open("q", &a, SystemTime::UNIX_EPOCH));
        assert!(gate.is_open("q"));
        assert_eq!(gate.close("q").map(|i| i.alert), Some(a));
        assert!(gate.close("q").is_none());
        assert!(gate.close("never").is_none());
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn hot_gate(t0: Instant) -> Gate {
        Gate::new(
            W,
            1000,
            Some(HotRule {
                threshold: 100,
                window: HOUR,
            }),
            t0,
        )
    }

    #[test]
    fn a_key_seen_over_100_times_in_an_hour_becomes_hot_once() {
        let t0 = Instant::now();
        let gate = hot_gate(t0);
        // One every 30 s: the 101st comes 50 minutes in.
        let hot: Vec<(u64, Looping)> = (0..300u64)
            .filter_map(|i| {
                let (_, looping) = gate.check("k", t0 + Duration::from_secs(i * 30));
                looping.map(|l| (i, l))
            })
            .collect();
        assert_eq!(hot.len(), 1, "{hot:?}");
        assert_eq!(hot[0].0, 100);
        assert_eq!(hot[0].1.count, 101);
        assert_eq!(hot[0].1.span, Duration::from_secs(55 * 60));
        // 99 in an hour, then the next hour the same: never hot.
        let gate = hot_gate(t0);
        let n = (0..99u64)
            .chain(120..219)
            .filter(|i| {
                gate.check("k", t0 + Duration::from_secs(i * 36))
                    .1
                    .is_some()
            })
            .count();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_hot_key_cools_down_when_its_pace_drops() {
        let t0 = Instant::now();
        let gate = hot_gate(t0);
        // A tight retry loop: 412 in two minutes.
        let mut hot = 0;
        for i in 0..412u64 {
            hot += usize::from(
                gate.check("k", t0 + Duration::from_millis(i * 290))
                    .1
                    .is_some(),
            );
        }
        assert_eq!(hot, 1);
        assert!(gate.cooled(t0 + Duration::from_secs(600)).is_empty());
        // Quiet: 15 minutes after the loop's last 5-minute slot, it cools.
        assert!(gate
            .cooled(t0 + Duration::from_secs(15 * 60 - 1))
            .is_empty());
        assert_eq!(gate.cooled(t0 + Duration::from_secs(15 * 60)), ["k"]);
        assert!(gate.cooled(t0 + Duration::from_secs(20 * 60)).is_empty());
        // It can become hot again, as a new incident.
        let t1 = t0 + Duration::from_secs(3 * 3600);
        let again = (0..101u64)
            .filter(|i| gate.check("k", t1 + Duration::from_secs(*i)).1.is_some())
            .count();
        assert_eq!(again, 1);
    }

    #[test]
    fn a_steady_pace_above_half_the_threshold_stays_hot() {
        let t0 = Instant::now();
        let gate = hot_gate(t0);
        // 120 an hour for three hours: hot after ~50 minutes, stays hot.
        let mut hot = 0;
        for i in 0..360u64 {
            let now = t0 + Duration::from_secs(i * 30);
            hot += usize::from(gate.check("k", now).1.is_some());
            assert!(gate.cooled(now).is_empty(), "cooled at {i}");
        }
        assert_eq!(hot, 1);
    }

    #[test]
    fn no_rule_no_looping() {
        let t0 = Instant::now();
        let gate = Gate::new(W, 1000, None, t0);
        assert!((0..1000).all(|_| gate.check("k", t0).1.is_none()));
        assert!(gate.cooled(t0).is_empty());
    }

    #[test]
    fn sending_while_cooling_never_deadlocks() {
        let t0 = Instant::now();
        let gate = hot_gate(t0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..200_000u64 {
                    let key = if i % 2 == 0 { "a" } else { "b" };
                    let _ = gate.check(key, t0 + Duration::from_millis(i / 10));
                }
            });
            scope.spawn(|| {
                for i in 0..20_000u64 {
                    let _ = gate.cooled(t0 + Duration::from_millis(i));
                }
            });
        });
    }
}
