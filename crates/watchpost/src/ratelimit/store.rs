//! A sharded, capped state store for governor, and the limiter's clock.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use hashbrown::HashTable;

const SHARDS: usize = 64;

/// The limiter's time source for governor: a [`Clock`](crate::Clock)
/// read as nanoseconds since the limiter was built.
/// The limiter's time: nanoseconds since it was built. On the system
/// clock it reads the CPU's counter through quanta (as governor's own
/// default clock does), a few instructions where `Instant::now` is a
/// system call's worth; on a manual clock, the clock's time.
#[derive(Clone)]
pub(crate) struct LimiterClock {
    clock: crate::Clock,
    origin: std::time::Instant,
    counter: Option<(quanta::Clock, u64)>,
}

impl fmt::Debug for LimiterClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterClock")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl LimiterClock {
    pub(crate) fn new(clock: crate::Clock) -> Self {
        let counter = (!clock.is_manual()).then(|| {
            let counter = quanta::Clock::new();
            let origin = counter.raw();
            (counter, origin)
        });
        Self {
            origin: clock.now(),
            clock,
            counter,
        }
    }

    pub(crate) fn clock(&self) -> &crate::Clock {
        &self.clock
    }
}

impl Clock for LimiterClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        match &self.counter {
            Some((counter, origin)) => Nanos::new(counter.delta_as_nanos(*origin, counter.raw())),
            None => Nanos::from(self.clock.now().saturating_duration_since(self.origin)),
        }
    }
}

pub(crate) struct Store<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    /// foldhash, seeded per process (hashbrown's default): keyed, so
    /// clients can't aim their addresses at one bucket, and a few times
    /// cheaper than SipHash on this path.
    hasher: hashbrown::DefaultHashBuilder,
    cap_per_shard: usize,
    clock: LimiterClock,
    /// The clock reading the limiter measures from, set right after the
    /// governor limiter is built (so "now" here is never ahead of governor's).
    start: Arc<AtomicU64>,
    /// Nanoseconds a key may be ahead of now and still have capacity left:
    /// GCRA's tolerance, `(burst - 1) × interval`.
    tau: u64,
}

/// Keys and their TATs. The key is hashed once per check: the hash picks
/// the shard (from its middle bits) and the slot (low bits and top 7 bits,
/// as hashbrown uses them).
struct Shard<K> {
    map: HashTable<(K, u64)>,
}

impl<K> fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("shards", &self.shards.len())
            .field("cap_per_shard", &self.cap_per_shard)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> Store<K> {
    pub(crate) fn new(
        max_keys: usize,
        clock: LimiterClock,
        tau: Duration,
        start: Arc<AtomicU64>,
    ) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashTable::new(),
                })
            })
            .collect();
        Self {
            shards,
            hasher: hashbrown::DefaultHashBuilder::default(),
            cap_per_shard: max_keys.div_ceil(SHARDS).max(1),
            clock,
            start,
            tau: u64::try_from(tau.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn now(&self) -> u64 {
        self.clock
            .now()
            .as_u64()
            .saturating_sub(self.start.load(Ordering::Acquire))
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<K>> {
        let index = ((hash >> 32) as usize) % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard<K>>> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Frees room in a full shard (see the type's docs).
    ///
    /// The shard's table is rebuilt at its fixed capacity rather than
    /// filtered in place: removing entries leaves tombstones, and a table
    /// full of tombstones doubles on the next insert, which would let memory
    /// grow past the cap.
    fn make_room(&self, shard: &mut Shard<K>) {
        let now = self.now();
        let live = shard.map.iter().filter(|(_, tat)| *tat > now).count();
        // Refilled buckets carry no information: they always go.
        let (threshold, mut to_evict) = if live < self.cap_per_shard {
            (now, 0)
        } else {
            // Still full: the most idle keys not being limited (capacity
            // left: tat <= now + tau) go, smallest tat first; if every key
            // is being limited, the least limited go.
            let limit_line = now.saturating_add(self.tau);
            let mut idle: Vec<u64> = shard
                .map
                .iter()
                .map(|(_, tat)| *tat)
                .filter(|tat| *tat > now && *tat <= limit_line)
                .collect();
            if idle.is_empty() {
                idle = shard
                    .map
                    .iter()
                    .map(|(_, tat)| *tat)
                    .filter(|tat| *tat > now)
                    .collect();
            }
            let n = (self.cap_per_shard / 8).max(1).min(idle.len());
            match n.checked_sub(1) {
                Some(last) => (*idle.select_nth_unstable(last).1, n),
                // No live key (can't happen in a full shard): nothing to pick.
                None => (now, 0),
            }
        };
        let old = std::mem::replace(&mut shard.map, HashTable::with_capacity(self.cap_per_shard));
        for (key, tat) in old {
            let keep = if tat <= now {
                false
            } else if to_evict > 0 && tat <= threshold {
                to_evict -= 1;
                false
            } else {
                true
            };
            if keep {
                let hash = self.hasher.hash_one(&key);
                shard
                    .map
                    .insert_unique(hash, (key, tat), |(k, _)| self.hasher.hash_one(k));
            }
        }
    }
}

impl<K: Hash + Eq + Clone> StateStore for Store<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        if let Some((_, tat)) = shard.map.find_mut(hash, |(k, _)| k == key) {
            let (result, new) = f(Some(Nanos::new(*tat)))?;
            *tat = new.as_u64();
            return Ok(result);
        }
        let (result, new) = f(None)?;
        if shard.map.len() >= self.cap_per_shard {
            self.make_room(&mut shard);
        }
        shard
            .map
            .insert_unique(hash, (key.clone(), new.as_u64()), |(k, _)| {
                self.hasher.hash_one(k)
            });
        Ok(result)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for Store<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = drop_below.as_u64();
        for mut shard in self.shards() {
            shard.map.retain(|(_, tat)| *tat >= drop_below);
        }
    }

    fn shrink_to_fit(&self) {
        for mut shard in self.shards() {
            shard.map.shrink_to_fit(|(k, _)| self.hasher.hash_one(k));
        }
    }

    fn len(&self) -> usize {
        self.shards().map(|s| s.map.len()).sum()
    }

    fn is_empty(&self) -> bool {
        self.shards().all(|s| s.map.is_empty())
    }
}
