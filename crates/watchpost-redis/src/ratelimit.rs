//! [`RedisRateLimiter`]: GCRA shared by every replica through Redis, with
//! the same [`Decision`] (and so the same headers) as the in-memory
//! limiter, failing open (or closed) while Redis is unreachable.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::{Client, Script};
use watchpost::ratelimit::{Decision, DecisionFuture, Quota, RateLimitStore};

use crate::conn::{Answer, Availability, Conn, OnChange, Settings, LOG_TARGET};
use crate::keys::redis_key;
use crate::BuildError;

/// GCRA, as `watchpost::ratelimit::KeyedRateLimiter` (governor) computes it,
/// in microseconds on the Redis server's clock.
///
/// KEYS: the key's theoretical arrival time (TAT). ARGV: emission interval
/// T (µs), burst. Returns `{1, remaining, 0}` or `{0, 0, wait µs}`. The key
/// expires when the allowance is full again (TAT reached), when it would
/// behave exactly as a missing key: idle keys vanish.
///
/// `TIME` in a script needs effects replication: the default since Redis 5,
/// requested explicitly for older servers.
const GCRA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
local allow_at = tat - t * (burst - 1)
if now < allow_at then
  return {0, 0, allow_at - now}
end
local new_tat = tat + t
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  math.max(1, math.ceil((new_tat - now) / 1000)))
local remaining = math.floor((now + t * burst - new_tat) / t)
if remaining < 0 then remaining = 0 end
return {1, remaining, 0}
";

/// How long a fail-closed limiter tells clients to wait while Redis is down.
const CLOSED_RETRY: Duration = Duration::from_secs(1);

/// A GCRA rate limiter per key whose state lives in Redis, so that every
/// replica of a service shares one budget per key: with `10/min`, ten
/// requests in total get through across all replicas, not ten each.
///
/// Decisions are the in-memory
/// [`KeyedRateLimiter`](watchpost::ratelimit::KeyedRateLimiter)'s: the same
/// algorithm with the same parameters (emission interval
/// [`replenish_interval`](Quota::replenish_interval), bursts of
/// [`burst_size`](Quota::burst_size)), and `remaining`, `reset_after` and
/// `retry_after` computed the same way, so the headers match too.
///
/// - **Atomic**: each check is one Lua script (`EVALSHA`, falling back to
///   `EVAL` once after a restart of Redis), so concurrent checks from any
///   number of replicas never over-admit.
/// - **One clock**: the script reads the Redis server's `TIME`, so replicas
///   with skewed clocks still agree. (Passing "now" from each replica would
///   let a replica whose clock runs ahead hand out allowance early.)
/// - **Bounded memory**: one string per key, `{prefix}:rl:{key}` (long keys
///   shortened to a readable head and a hash), expiring when the key's
///   allowance is full again, so idle keys vanish on their own.
/// - **Redis down**: checks never fail. By default they *fail open*: every
///   request is allowed, with the headers of a key's first request
///   (`remaining` = limit − 1, `reset_after` = one interval), because an
///   outage of the limiter's store shouldn't become an outage of the
///   service. With [`fail_closed`](RedisRateLimiterBuilder::fail_closed),
///   every request is rejected with a `retry_after` of 1 s instead. One WARN
///   is logged when Redis becomes unreachable and one INFO when it is back;
///   meanwhile Redis is retried after 1 s, then less often, up to every
///   30 s, and checks in between don't touch the network.
///
/// Builds without connecting; the first check connects. The connection
/// lives on a thread of its own (`watchpost-redis`), so it serves every
/// runtime alike (actix-web runs one per worker thread) and a busy worker
/// never holds up another's checks. Neither logs, errors nor `Debug`
/// output show the URL's password. Cheap to clone (an `Arc`); clones share
/// the connection.
///
/// # Examples
///
/// ```no_run
/// use watchpost::ratelimit::Quota;
/// use watchpost_redis::RedisRateLimiter;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisRateLimiter::builder(&std::env::var("REDIS_URL")?, "10/min".parse::<Quota>()?)
///     .prefix("checkout-api")
///     .build()?;
/// let decision = limiter.check("user-42").await;
/// if !decision.allowed {
///     println!("429, retry in {:?}", decision.retry_after);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Arc<Conn>,
    /// How long a check waits for Redis (the connection's own timeout
    /// serves alert commands when it is shared).
    timeout: Duration,
    prefix: String,
    quota: Quota,
    fail_closed: bool,
    on_change: Option<OnChange>,
    gcra: Script,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("addr", &self.inner.conn.addr())
            .field("prefix", &self.inner.prefix)
            .field("quota", &self.inner.quota)
            .field("timeout", &self.inner.timeout)
            .field("fail_closed", &self.inner.fail_closed)
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A builder for a limiter with `quota` per key on the Redis at `url`
    /// (checked by [`build`](RedisRateLimiterBuilder::build)).
    pub fn builder(url: &str, quota: Quota) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder::new(Client::open(url).map_err(|_| BuildError::InvalidUrl), quota)
    }

    /// A builder for a limiter using `client` (for TLS or settings a URL
    /// can't express).
    pub fn with_client(client: Client, quota: Quota) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder::new(Ok(client), quota)
    }

    /// Counts one request for `key`, shared with every limiter on the same
    /// Redis and [prefix](RedisRateLimiterBuilder::prefix).
    ///
    /// Never fails: while Redis is unreachable the decision follows
    /// [`fail_closed`](RedisRateLimiterBuilder::fail_closed) (see the type's
    /// docs). Takes at most the [timeout](RedisRateLimiterBuilder::timeout).
    pub async fn check(&self, key: &str) -> Decision {
        self.check_quota(key, self.inner.quota).await
    }

    /// Counts one request for `key` against `quota` instead of the
    /// limiter's own (what a [`RateLimiter`](watchpost::ratelimit::RateLimiter)
    /// with per-route quotas does through [`RateLimitStore`]).
    ///
    /// A key's state is its GCRA time, which doesn't record the quota: use
    /// one quota per key.
    pub async fn check_quota(&self, key: &str, quota: Quota) -> Decision {
        let inner = &*self.inner;
        let redis_key = redis_key(&inner.prefix, "rl", key);
        let interval = quota.replenish_interval();
        let t = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let limit = quota.burst_size().get();
        let owner = Arc::clone(&self.inner);
        let answer = inner
            .conn
            .run_on_driver(inner.timeout, |mut conn| async move {
                let mut call = owner.gcra.key(&redis_key);
                call.arg(t).arg(limit);
                call.invoke_async::<(i64, i64, i64)>(&mut conn).await
            })
            .await;
        match answer {
            Answer::Ok { value, recovered } => {
                if let Some(after) = recovered {
                    let addr = inner.conn.addr();
                    tracing::info!(
                        target: LOG_TARGET,
                        addr = %addr,
                        "rate limiting shared through redis again (redis {addr}) after {}s",
                        after.as_secs()
                    );
                    inner
                        .conn
                        .report(inner.on_change.as_ref(), Availability::Recovered { after });
                }
                decision(quota, value)
            }
            Answer::Down { started } => {
                if let Some(reason) = started {
                    let addr = inner.conn.addr();
                    let mode = if inner.fail_closed {
                        "rejecting every request (fail closed)"
                    } else {
                        "allowing every request (fail open)"
                    };
                    let line = inner.conn.outage_line(
                        &reason,
                        format!(
                            "shared rate limiting unavailable (redis {addr}: {reason}); \
                             {mode} until it is back"
                        ),
                    );
                    tracing::warn!(target: LOG_TARGET, addr = %addr, "{line}");
                    inner
                        .conn
                        .report(inner.on_change.as_ref(), Availability::Unavailable);
                }
                self.fallback(quota)
            }
        }
    }

    fn fallback(&self, quota: Quota) -> Decision {
        let limit = quota.burst_size().get();
        if self.inner.fail_closed {
            Decision::new(false, limit, 0, CLOSED_RETRY, Some(CLOSED_RETRY))
        } else {
            Decision::new(true, limit, limit - 1, quota.replenish_interval(), None)
        }
    }

    /// The quota per key.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// Whether the last check reached Redis (`true` before the first).
    pub fn is_available(&self) -> bool {
        self.inner.conn.is_available()
    }

    /// A limiter sharing a store's connection (a `Watchpost`'s shared
    /// state); its own quota is unused (each check brings its rule's).
    pub(crate) fn on_connection(
        conn: Arc<Conn>,
        prefix: String,
        fail_closed: bool,
        timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                timeout,
                prefix,
                quota: Quota::per_minute(std::num::NonZeroU32::MIN),
                fail_closed,
                on_change: None,
                gcra: Script::new(GCRA),
            }),
        }
    }

    pub(crate) fn fails_closed(&self) -> bool {
        self.inner.fail_closed
    }
}

/// The shared counts of a [`RateLimiter`](watchpost::ratelimit::RateLimiter),
/// through [`RateLimiter::store`](watchpost::ratelimit::RateLimiter::store):
/// every replica's HTTP rate limiting (tower, axum, actix-web) then shares
/// one budget per client and route. The quota of each check is the
/// `RateLimiter`'s rule for the path (this limiter's own quota is not used),
/// and the keys are `{prefix}:rl:{rule}:{client}`.
///
/// ```no_run
/// use watchpost::ratelimit::{Quota, RateLimiter};
/// use watchpost_redis::RedisRateLimiter;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let quota: Quota = "120/min".parse()?;
/// let redis = RedisRateLimiter::builder(&std::env::var("REDIS_URL")?, quota)
///     .prefix("checkout-api")
///     .build()?;
/// let limiter = RateLimiter::per_ip(quota)
///     .route("/api/chat", "10/min".parse()?)
///     .store(redis); // then `RateLimitLayer::new(limiter)` as usual
/// # let _ = limiter; Ok(()) }
/// ```
impl RateLimitStore for RedisRateLimiter {
    fn check(&self, key: &str, quota: Quota) -> DecisionFuture {
        let this = self.clone();
        let key = key.to_owned();
        Box::pin(async move { this.check_quota(&key, quota).await })
    }
}

/// The [`Decision`] for the script's reply, computed as the in-memory
/// limiter does from the same GCRA state.
fn decision(quota: Quota, (allowed, remaining, wait_us): (i64, i64, i64)) -> Decision {
    let limit = quota.burst_size().get();
    let interval = quota.replenish_interval();
    if allowed == 1 {
        let remaining = u32::try_from(remaining.max(0)).unwrap_or(0).min(limit);
        Decision::new(
            true,
            limit,
            remaining,
            interval.saturating_mul(limit - remaining),
            None,
        )
    } else {
        let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
        Decision::new(
            false,
            limit,
            0,
            wait + interval.saturating_mul(limit - 1),
            Some(wait),
        )
    }
}

/// Configures a [`RedisRateLimiter`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::ratelimit::Quota;
/// use watchpost_redis::RedisRateLimiter;
///
/// let limiter = RedisRateLimiter::builder("redis://:password@redis.internal:6379", "60/min".parse::<Quota>()?)
///     .prefix("checkout")
///     .timeout(Duration::from_millis(100))
///     .fail_closed(true)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RedisRateLimiterBuilder {
    settings: Settings,
    quota: Quota,
    fail_closed: bool,
}

impl fmt::Debug for RedisRateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisRateLimiterBuilder");
        self.settings.debug_fields(&mut d);
        d.field("quota", &self.quota)
            .field("fail_closed", &self.fail_closed)
            .finish()
    }
}

impl RedisRateLimiterBuilder {
    fn new(client: Result<Client, BuildError>, quota: Quota) -> Self {
        Self {
            settings: Settings::new(client, Duration::from_millis(250)),
            quota,
            fail_closed: false,
        }
    }

    /// The prefix of every key (default `watchpost`); the limiter's keys
    /// are `{prefix}:rl:{key}`. Limiters with the same prefix and key share
    /// one budget: give limiters with different quotas different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// How long a check waits for Redis, connecting included, before
    /// deciding as if Redis were down (default 250 ms). Every request
    /// waits on the check, so keep it short.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Whether to reject every request while Redis is unreachable (default
    /// `false`: allow every request). See [`RedisRateLimiter`].
    pub fn fail_closed(mut self, fail_closed: bool) -> Self {
        self.fail_closed = fail_closed;
        self
    }

    /// Called when Redis becomes unavailable and when it recovers, once per
    /// change (not per check), on the thread of the check that noticed.
    /// Keep it quick: a request is waiting. Raising an alert with
    /// [`Alerter::fire`](watchpost::alert::Alerter::fire) is fine (it never
    /// blocks); see the [crate docs](crate).
    pub fn on_change(mut self, f: impl Fn(Availability) + Send + Sync + 'static) -> Self {
        self.settings.on_change = Some(Arc::new(f));
        self
    }

    /// Builds the limiter. Doesn't connect.
    ///
    /// # Errors
    ///
    /// The URL is invalid, the timeout is zero, or the prefix is empty.
    pub fn build(self) -> Result<RedisRateLimiter, BuildError> {
        let (conn, prefix, on_change) = self.settings.build()?;
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                timeout: conn.timeout(),
                conn,
                prefix,
                quota: self.quota,
                fail_closed: self.fail_closed,
                on_change,
                gcra: Script::new(GCRA),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> Quota {
        "10/min".parse().unwrap()
    }

    #[test]
    fn decisions_match_the_in_memory_formulas() {
        let allowed = decision(quota(), (1, 7, 0));
        assert_eq!(
            allowed,
            Decision::new(true, 10, 7, Duration::from_secs(18), None)
        );
        let rejected = decision(quota(), (0, 0, 2_500_000));
        assert_eq!(
            rejected,
            Decision::new(
                false,
                10,
                0,
                Duration::from_millis(2_500) + Duration::from_secs(54),
                Some(Duration::from_millis(2_500)),
            )
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let limiter = RedisRateLimiter::builder("redis://:s3cret@127.0.0.1:1", quota())
            .build()
            .unwrap();
        let debug = format!("{limiter:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("127.0.0.1:1"), "{debug}");
        let builder = RedisRateLimiter::builder("redis://user:s3cret@127.0.0.1:1", quota());
        assert!(!format!("{builder:?}").contains("s3cret"));
        let bad = RedisRateLimiter::builder("redis://:s3cret@[nope", quota())
            .build()
            .unwrap_err();
        assert_eq!(bad, BuildError::InvalidUrl);
    }

    #[test]
    fn bad_settings_are_refused() {
        let b = || RedisRateLimiter::builder("redis://127.0.0.1", quota());
        assert_eq!(
            b().timeout(Duration::ZERO).build().unwrap_err(),
            BuildError::ZeroTimeout
        );
        assert_eq!(b().prefix("").build().unwrap_err(), BuildError::EmptyPrefix);
    }
}
