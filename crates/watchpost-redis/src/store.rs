//! [`RedisStore`]: dedupe and incidents shared through Redis, with a local
//! fallback while Redis is unreachable.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::{Client, RedisResult, Script};
use watchpost::alert::{AlertStore, Claim, MemoryStore, StoreFuture};
use watchpost::ratelimit::RateLimitStore;
use watchpost::shared::{SharedContext, SharedState};

use crate::conn::{Answer, Availability, Conn, OnChange, Settings, LOG_TARGET};
use crate::keys::redis_key;
use crate::ratelimit::RedisRateLimiter;

/// Deliver (returns the suppressed count) or count (returns -1), atomically.
/// KEYS: dedupe, suppressed. ARGV: value, window ms, increment, counter ttl ms.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local n = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  redis.call('DEL', KEYS[2])
  return n
end
redis.call('INCRBY', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return -1
";

/// Get and delete (GETDEL, for servers older than 6.2 too).
const CLOSE: &str = r"
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
";

/// Deletes an incident only if it started no later than ARGV[1] (ms): an
/// incident another replica opened since is kept.
const CLOSE_IF_OLDER: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]) or '')
if v and v <= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return 1 end
return 0
";

/// Incidents closed during an outage, deleted from Redis on recovery.
const MAX_PENDING_CLOSES: usize = 10_000;

/// Why a [`RedisStoreBuilder`] or a
/// [`RedisRateLimiterBuilder`](crate::RedisRateLimiterBuilder) could not
/// build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The URL is not a Redis URL (`redis://[[user]:password@]host[:port][/db]`).
    /// The URL itself is not repeated: it may hold a password.
    InvalidUrl,
    /// The command timeout is zero.
    ZeroTimeout,
    /// The incident TTL is zero.
    ZeroIncidentTtl,
    /// The key prefix is empty.
    EmptyPrefix,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidUrl => {
                "invalid redis url (expected redis://[[user]:password@]host[:port][/db])"
            }
            Self::ZeroTimeout => "the redis command timeout must be more than zero",
            Self::ZeroIncidentTtl => "the incident ttl must be more than zero",
            Self::EmptyPrefix => "the redis key prefix must not be empty",
        })
    }
}

impl std::error::Error for BuildError {}

/// An [`AlertStore`] on Redis: N replicas of a service send one message
/// per alert (per dedupe window) and one firing/resolved pair per incident.
///
/// Cheap to clone (an `Arc`). Give each [`Alerter`](watchpost::alert::Alerter)
/// its store with [`AlerterBuilder::store`](watchpost::alert::AlerterBuilder::store).
///
/// - **Dedupe**: `SET {prefix}:dedupe:{key} NX PX <window>`; the replica
///   that sets it delivers, the others add to `{prefix}:suppressed:{key}`,
///   which the next delivery reads and resets (one Lua script, so atomic).
/// - **Incidents**: `SET {prefix}:incident:{key} <started ms> NX PX <ttl>`
///   opens, get-and-delete closes. The TTL (7 days by default) lets an
///   incident abandoned by a crashed replica expire: memory stays bounded.
/// - **Redis down**: every answer comes from an in-process store instead,
///   so this replica still dedupes on its own; no alert is lost or held up
///   and nothing fails. One WARN is logged when Redis becomes unreachable
///   and one INFO when it is back, and the
///   [`on_change`](RedisStoreBuilder::on_change) callback is called on both
///   (use it to raise an alert). While down, Redis is retried after 1 s,
///   then less often, up to every 30 s. Once it is back, what the replica
///   suppressed meanwhile is handed on with its next claim of each key, so
///   the next message's "N similar" still counts it; incidents resolved
///   during the outage are closed in Redis too (unless reopened since).
///
/// The store connects lazily, on the alert delivery thread's own runtime,
/// so building it never fails because Redis is down, and alerts keep their
/// shared dedupe even when the application's runtime is stuck.
///
/// Neither logs, errors nor `Debug` output show the URL's password.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Arc<Conn>,
    prefix: String,
    incident_ttl: Duration,
    /// The rate-limit store on the same connection, for a `Watchpost`.
    limits: RedisRateLimiter,
    on_change: Option<OnChange>,
    local: MemoryStore,
    claim: Script,
    close: Script,
    close_if_older: Script,
    outbox: crate::outbox::Scripts,
    /// Redis incident key → when it was closed locally (unix ms), while
    /// Redis was down.
    pending_closes: Mutex<HashMap<String, u64>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.inner.conn.addr())
            .field("prefix", &self.inner.prefix)
            .field("incident_ttl", &self.inner.incident_ttl)
            .field("timeout", &self.inner.conn.timeout())
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis at `url` with the default settings. Doesn't
    /// connect: the first alert does.
    ///
    /// # Errors
    ///
    /// `url` is not a Redis URL.
    pub fn open(url: &str) -> Result<Self, BuildError> {
        Self::builder(url).build()
    }

    /// A builder for a store on the Redis at `url` (checked by
    /// [`build`](RedisStoreBuilder::build)).
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Client::open(url).map_err(|_| BuildError::InvalidUrl))
    }

    /// A builder for a store using `client` (for TLS or settings a URL
    /// can't express).
    pub fn with_client(client: Client) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Ok(client))
    }

    /// Whether the last Redis command worked (`true` before the first).
    /// While `false`, dedupe and incidents are local to this process.
    pub fn is_available(&self) -> bool {
        self.inner.conn.is_available()
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub(crate) fn scripts(&self) -> &crate::outbox::Scripts {
        &self.inner.outbox
    }

    /// Runs `command` on Redis: `None` if Redis is down (now or recently).
    pub(crate) async fn run_shared<T, F, Fut>(&self, command: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.inner.shared(command).await
    }
}

/// Configures a [`RedisStore`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost_redis::RedisStore;
///
/// let store = RedisStore::builder("redis://:password@redis.internal:6379")
///     .prefix("checkout")
///     .incident_ttl(Duration::from_secs(3 * 24 * 3600))
///     .timeout(Duration::from_millis(500))
///     .build()?;
/// # Ok::<(), watchpost_redis::BuildError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RedisStoreBuilder {
    settings: Settings,
    incident_ttl: Duration,
    fail_closed: bool,
    limit_timeout: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisStoreBuilder");
        self.settings.debug_fields(&mut d);
        d.field("incident_ttl", &self.incident_ttl)
            .field("fail_closed", &self.fail_closed)
            .field("limit_timeout", &self.limit_timeout)
            .finish()
    }
}

impl RedisStoreBuilder {
    fn new(client: Result<Client, BuildError>) -> Self {
        Self {
            settings: Settings::new(client, Duration::from_secs(1)),
            incident_ttl: Duration::from_secs(7 * 24 * 3600),
            fail_closed: false,
            limit_timeout: Duration::from_millis(250),
        }
    }

    /// As the shared state of a [`Watchpost`](watchpost::Watchpost): whether
    /// its rate limits reject every request while Redis is unreachable
    /// (default `false`: allow every request; see
    /// [`RedisRateLimiter`]).
    pub fn fail_closed(mut self, fail_closed: bool) -> Self {
        self.fail_closed = fail_closed;
        self
    }

    /// As the shared state of a [`Watchpost`](watchpost::Watchpost): how
    /// long a rate-limit check waits for Redis before deciding as if it
    /// were down (default 250 ms; every request waits on it, so keep it
    /// short). Alert commands use [`timeout`](Self::timeout).
    pub fn limit_timeout(mut self, timeout: Duration) -> Self {
        self.limit_timeout = timeout;
        self
    }

    /// The prefix of every key (default `watchpost`). Services sharing a
    /// Redis but not their alerts need different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// How long an incident stays open in Redis if nobody resolves it
    /// (default 7 days), so a replica that died mid-incident doesn't leave
    /// the key forever. An incident open longer than this can fire again.
    pub fn incident_ttl(mut self, ttl: Duration) -> Self {
        self.incident_ttl = ttl;
        self
    }

    /// How long to wait for Redis, connecting included, before answering
    /// from the local fallback (default 1 s). Keep it under the Alerter's
    /// store timeout (2 s), or the Alerter gives up first and delivers
    /// without dedupe.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Called, on the alert delivery thread, when Redis becomes unavailable
    /// and when it recovers: once per change, not per command.
    ///
    /// Calling [`Alerter::fire`](watchpost::alert::Alerter::fire) /
    /// [`resolve`](watchpost::alert::Alerter::resolve) from here is fine
    /// (they never block); see the [crate docs](crate) for the wiring.
    pub fn on_change(mut self, f: impl Fn(Availability) + Send + Sync + 'static) -> Self {
        self.settings.on_change = Some(Arc::new(f));
        self
    }

    /// Builds the store. Doesn't connect.
    ///
    /// # Errors
    ///
    /// The URL is invalid, the timeout or TTL is zero, or the prefix empty.
    pub fn build(self) -> Result<RedisStore, BuildError> {
        let (conn, prefix, on_change) = self.settings.build()?;
        if self.incident_ttl.is_zero() {
            return Err(BuildError::ZeroIncidentTtl);
        }
        let limits = RedisRateLimiter::on_connection(
            conn.clone(),
            prefix.clone(),
            self.fail_closed,
            self.limit_timeout,
        );
        Ok(RedisStore {
            inner: Arc::new(Inner {
                limits,
                conn,
                prefix,
                incident_ttl: self.incident_ttl,
                on_change,
                local: MemoryStore::new(),
                claim: Script::new(CLAIM),
                close: Script::new(CLOSE),
                close_if_older: Script::new(CLOSE_IF_OLDER),
                outbox: crate::outbox::Scripts::new(),
                pending_closes: Mutex::default(),
            }),
        })
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Inner {
    fn pending_closes(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.pending_closes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self, kind: &str, key: &str) -> String {
        redis_key(&self.prefix, kind, key)
    }

    /// Runs `command` on Redis: `None` if Redis is down (now or recently).
    /// Called on the delivery thread's runtime, so the connection's tasks
    /// run there.
    async fn shared<T, F, Fut>(&self, command: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match self.conn.run(command).await {
            Answer::Ok { value, recovered } => {
                if let Some(after) = recovered {
                    self.recovered(after).await;
                }
                Some(value)
            }
            Answer::Down { started } => {
                if let Some(reason) = started {
                    let addr = self.conn.addr();
                    let line = self.conn.outage_line(
                        &reason,
                        format!(
                            "shared alert state unavailable (redis {addr}: {reason}); \
                             deduplicating alerts in this process until it is back"
                        ),
                    );
                    tracing::warn!(target: LOG_TARGET, addr = %addr, "{line}");
                    self.notify(Availability::Unavailable);
                }
                None
            }
        }
    }

    async fn recovered(&self, after: Duration) {
        let pending = std::mem::take(&mut *self.pending_closes());
        let addr = self.conn.addr();
        tracing::info!(
            target: LOG_TARGET,
            addr = %addr,
            "shared alert state available again (redis {addr}) after {}s; \
             alerts are deduplicated across replicas again",
            after.as_secs()
        );
        self.notify(Availability::Recovered { after });
        if let Some(mut conn) = self.conn.connection() {
            for (key, closed_at) in pending {
                let mut call = self.close_if_older.key(&key);
                call.arg(closed_at);
                let _ =
                    tokio::time::timeout(self.conn.timeout(), call.invoke_async::<i64>(&mut conn))
                        .await;
            }
        }
    }

    fn notify(&self, change: Availability) {
        self.conn.report(self.on_change.as_ref(), change);
    }
}

/// The outbox (see [`OutboxRecord`](watchpost::alert::OutboxRecord)):
/// alerts a sink has not yet received survive a restart, a crash or the
/// end of a panicking process, and the next process (or another replica)
/// delivers them within their max age, at least once.
impl AlertStore for RedisStore {
    fn keeps_outbox(&self) -> bool {
        true
    }

    fn outbox_put<'a>(
        &'a self,
        owner: &'a str,
        record: &'a watchpost::alert::OutboxRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.put_record(owner, record))
    }

    fn outbox_ack<'a>(&'a self, owner: &'a str, id: &'a str, sink: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.ack_record(owner, id, sink))
    }

    fn outbox_adopt<'a>(
        &'a self,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<watchpost::alert::OutboxRecord>> {
        Box::pin(self.adopt_records(owner, lease))
    }

    fn outbox_release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.release_owner(owner))
    }

    fn claim<'a>(
        &'a self,
        key: &'a str,
        at: SystemTime,
        window: Duration,
        similar: u64,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let inner = &*self.inner;
            let dedupe = inner.key("dedupe", key);
            let counter = inner.key("suppressed", key);
            // What the local fallback counted during an outage is added
            // to this claim, so it isn't lost once Redis answers again.
            let local = inner.local.take_suppressed(key);
            let shared_similar = similar.saturating_add(local);
            let increment = shared_similar.saturating_add(1).min(i64::MAX as u64 / 2);
            // The count outlives the window, so the next delivery finds it.
            let counter_ttl = ms(window.saturating_mul(2).max(Duration::from_secs(3600)));
            let answer = inner
                .shared(|mut conn| async move {
                    let mut call = inner.claim.key(&dedupe);
                    call.key(&counter)
                        .arg(unix_ms(at))
                        .arg(ms(window))
                        .arg(increment)
                        .arg(counter_ttl);
                    call.invoke_async::<i64>(&mut conn).await
                })
                .await;
            match answer {
                Some(n) if n >= 0 => Ok(Claim::Deliver {
                    similar: (n as u64).saturating_add(shared_similar),
                }),
                Some(_) => Ok(Claim::Suppressed),
                // Still down: the local store keeps counting, the taken
                // count included.
                None => inner.local.claim(key, at, window, shared_similar).await,
            }
        })
    }

    fn open_incident<'a>(&'a self, key: &'a str, at: SystemTime) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let inner = &*self.inner;
            let incident = inner.key("incident", key);
            let answer = inner
                .shared(|mut conn| async move {
                    redis::cmd("SET")
                        .arg(&incident)
                        .arg(unix_ms(at))
                        .arg("NX")
                        .arg("PX")
                        .arg(ms(inner.incident_ttl))
                        .query_async::<Option<String>>(&mut conn)
                        .await
                })
                .await;
            match answer {
                Some(set) => {
                    let opened = set.is_some();
                    if opened {
                        // Mirrored, so this replica can still resolve it
                        // if Redis goes down meanwhile.
                        let _ = inner.local.open_incident(key, at).await;
                    }
                    Ok(opened)
                }
                None => inner.local.open_incident(key, at).await,
            }
        })
    }

    fn close_incident<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        Box::pin(async move {
            let inner = &*self.inner;
            let incident = inner.key("incident", key);
            let local = inner.local.close_incident(key).await.ok().flatten();
            let answer = inner
                .shared(|mut conn| {
                    let incident = incident.clone();
                    async move {
                        inner
                            .close
                            .key(&incident)
                            .invoke_async::<Option<u64>>(&mut conn)
                            .await
                    }
                })
                .await;
            match answer {
                Some(Some(started)) => Ok(Some(UNIX_EPOCH + Duration::from_millis(started))),
                // Opened while Redis was down: only this replica knew.
                Some(None) => Ok(local),
                None => {
                    // Delete it from Redis once it's back, unless reopened
                    // since; meanwhile resolve from what this replica knows.
                    let mut pending = inner.pending_closes();
                    if pending.len() < MAX_PENDING_CLOSES {
                        pending.insert(incident, unix_ms(SystemTime::now()));
                    }
                    Ok(local)
                }
            }
        })
    }
}

/// The shared state of a [`Watchpost`](watchpost::Watchpost), in one line:
/// `.shared(RedisStore::open(&url)?)`. Alert dedupe and incidents go
/// through this store, rate limits through a [`RedisRateLimiter`] on the
/// same connection (keys `{prefix}:rl:{rule}:{client}`), which runs on
/// watchpost's thread; while Redis is unreachable the handle raises one
/// "Shared state unavailable" incident, and resolves it when Redis is back.
///
/// ```no_run
/// use watchpost::Watchpost;
/// use watchpost_redis::RedisStore;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let wp = Watchpost::from_env()?
///     .shared(RedisStore::open(&std::env::var("REDIS_URL")?)?)
///     .build()?;
/// # let _ = wp; Ok(()) }
/// ```
impl SharedState for RedisStore {
    fn describe(&self) -> String {
        format!("redis {}", self.inner.conn.addr())
    }

    fn alert_store(&self) -> Arc<dyn AlertStore> {
        Arc::new(self.clone())
    }

    fn rate_limit_store(&self) -> Arc<dyn RateLimitStore> {
        Arc::new(self.inner.limits.clone())
    }

    fn start(&self, context: SharedContext) {
        self.inner
            .conn
            .serves_limits(self.inner.limits.fails_closed());
        self.inner.conn.attach(context);
    }

    fn is_available(&self) -> bool {
        self.inner.conn.is_available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let store = RedisStore::open("redis://:s3cret@127.0.0.1:1").unwrap();
        let debug = format!("{store:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("127.0.0.1:1"), "{debug}");
        let builder = RedisStore::builder("redis://user:s3cret@127.0.0.1:1");
        assert!(!format!("{builder:?}").contains("s3cret"));
        let bad = RedisStore::open("redis://:s3cret@[nope").unwrap_err();
        assert_eq!(bad, BuildError::InvalidUrl);
        assert!(!format!("{bad} {bad:?}").contains("s3cret"));
        assert_eq!(
            store.inner.conn.redact("auth s3cret failed"),
            "auth *** failed"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let b = || RedisStore::builder("redis://127.0.0.1");
        assert_eq!(
            b().timeout(Duration::ZERO).build().unwrap_err(),
            BuildError::ZeroTimeout
        );
        assert_eq!(
            b().incident_ttl(Duration::ZERO).build().unwrap_err(),
            BuildError::ZeroIncidentTtl
        );
        assert_eq!(b().prefix("").build().unwrap_err(), BuildError::EmptyPrefix);
    }
}
