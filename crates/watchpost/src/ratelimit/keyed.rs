//! [`KeyedRateLimiter`]: GCRA per key, on governor, with bounded memory.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;

use super::quota::Quota;
use super::store::{LimiterClock, Store};

type Governor<K> = governor::RateLimiter<K, Store<K>, LimiterClock, StateInformationMiddleware>;

/// The default cap on tracked keys: about 64 MiB of state for the key type.
fn default_max_keys<K>() -> usize {
    // An entry is the key and an 8-byte time, plus the hash table's control
    // byte, at 7/8 load.
    let entry = std::mem::size_of::<(K, u64)>() + 1;
    (64 * 1024 * 1024) / (entry * 8 / 7).max(1)
}

/// The outcome of one rate-limit check.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Most requests allowed at once (the quota's burst).
    pub limit: u32,
    /// Requests left right now, after this one.
    pub remaining: u32,
    /// Time until the key's allowance is full again.
    pub reset_after: Duration,
    /// When rejected: time until the next request would be allowed.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// A decision made elsewhere, such as by a limiter shared through
    /// Redis, so it gets the same headers as this crate's own.
    ///
    /// `remaining` is the requests left after this one (0 when rejected),
    /// `reset_after` the time until the allowance is full again, and
    /// `retry_after` is `Some` exactly when the request is rejected.
    ///
    /// ```
    /// use std::time::Duration;
    /// use watchpost::ratelimit::Decision;
    ///
    /// let d = Decision::new(false, 10, 0, Duration::from_secs(60), Some(Duration::from_secs(6)));
    /// assert!(!d.allowed);
    /// ```
    pub const fn new(
        allowed: bool,
        limit: u32,
        remaining: u32,
        reset_after: Duration,
        retry_after: Option<Duration>,
    ) -> Self {
        Self {
            allowed,
            limit,
            remaining,
            reset_after,
            retry_after,
        }
    }
}

/// A GCRA rate limiter per key (an IP address, a user id, an API key), on
/// governor, whose memory stays bounded with no cleanup task to run.
///
/// Keys whose allowance has refilled are dropped as new keys arrive, and the
/// number of tracked keys is capped (by default, about 64 MiB of state; see
/// [`max_keys`](Self::max_keys)). Eviction never loses a limit in progress
/// while there is anything else to evict: keys that are not being limited
/// go first, most idle first. Cheap to clone (an `Arc`); clones share state.
///
/// ```
/// use std::num::NonZeroU32;
/// use watchpost::ratelimit::{KeyedRateLimiter, Quota};
///
/// let per_user = KeyedRateLimiter::new(Quota::per_minute(NonZeroU32::new(2).unwrap()));
/// assert!(per_user.check(&"user-42").allowed);
/// let second = per_user.check(&"user-42");
/// assert_eq!((second.allowed, second.remaining), (true, 0));
/// let third = per_user.check(&"user-42");
/// assert!(!third.allowed);
/// assert!(third.retry_after.unwrap().as_secs() <= 30);
/// assert!(per_user.check(&"user-7").allowed); // other keys are unaffected
/// ```
pub struct KeyedRateLimiter<K: Hash + Eq + Clone> {
    inner: Arc<Inner<K>>,
}

struct Inner<K: Hash + Eq + Clone> {
    governor: Governor<K>,
    quota: Quota,
    clock: LimiterClock,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("quota", &self.inner.quota)
            .field("max_keys", &self.inner.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A limiter with the default key cap and the monotonic clock.
    pub fn new(quota: Quota) -> Self {
        Self::build(quota, default_max_keys::<K>(), crate::Clock::system())
    }

    fn build(quota: Quota, max_keys: usize, clock: crate::Clock) -> Self {
        let clock = LimiterClock::new(clock);
        let tau = quota
            .replenish_interval()
            .saturating_mul(quota.burst_size().get() - 1);
        let start = Arc::new(AtomicU64::new(0));
        let store = Store::new(max_keys, clock.clone(), tau, start.clone());
        let governor = Governor::new(quota.to_governor(), store, clock.clone());
        // governor owns the store and measured its start in `new`; a reading
        // taken after that keeps the store's "now" from running ahead of it.
        start.store(clock.now().as_u64(), Ordering::Release);
        Self {
            inner: Arc::new(Inner {
                governor,
                quota,
                clock,
                max_keys,
            }),
        }
    }

    /// Caps the number of tracked keys (default: about 64 MiB of state).
    /// Configure before use: this starts from empty state.
    #[must_use]
    pub fn max_keys(self, max_keys: usize) -> Self {
        Self::build(
            self.inner.quota,
            max_keys.max(1),
            self.inner.clock.clock().clone(),
        )
    }

    /// Uses `clock` (default [`Clock::system`](crate::Clock::system); a
    /// [`ManualClock`](crate::ManualClock)'s in tests). Configure before
    /// use: this starts from empty state.
    #[must_use]
    pub fn clock(self, clock: crate::Clock) -> Self {
        Self::build(self.inner.quota, self.inner.max_keys, clock)
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &K) -> Decision {
        let quota = &self.inner.quota;
        let limit = quota.burst_size().get();
        let interval = quota.replenish_interval();
        match self.inner.governor.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(limit);
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    reset_after: interval.saturating_mul(limit - remaining),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.inner.clock.now());
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_after: wait + interval.saturating_mul(limit - 1),
                    retry_after: Some(wait),
                }
            }
        }
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// The number of keys tracked.
    pub fn len(&self) -> usize {
        self.inner.governor.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.inner.governor.is_empty()
    }

    /// Drops every key whose allowance has refilled (nothing is lost: such a
    /// key behaves as a new one). Insertions do this shard by shard as
    /// needed; call it to reclaim memory after a burst of traffic.
    pub fn retain_recent(&self) {
        self.inner.governor.retain_recent();
    }

    /// Releases memory held by the key tables beyond their current size.
    pub fn shrink_to_fit(&self) {
        self.inner.governor.shrink_to_fit();
    }

    /// The cap on tracked keys.
    pub fn key_cap(&self) -> usize {
        self.inner.max_keys
    }
}
