//! The lazy Redis connection shared by [`RedisStore`](crate::RedisStore)
//! and [`RedisRateLimiter`](crate::RedisRateLimiter): one attempt per
//! command within a timeout, and backoff while Redis is down. Callers log
//! the transitions ([`Answer`]) in their own words.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};
use watchpost::shared::SharedContext;

use crate::BuildError;

pub(crate) const LOG_TARGET: &str = "watchpost_redis";

pub use watchpost::shared::Availability;

pub(crate) type OnChange = Arc<dyn Fn(Availability) + Send + Sync>;

/// What the store's and the limiter's builders share.
pub(crate) struct Settings {
    pub(crate) client: Result<Client, BuildError>,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) on_change: Option<OnChange>,
}

impl Settings {
    pub(crate) fn new(client: Result<Client, BuildError>, timeout: Duration) -> Self {
        Self {
            client,
            prefix: "watchpost".to_owned(),
            timeout,
            on_change: None,
        }
    }

    /// Adds the settings to a builder's `Debug`, the address without its
    /// password.
    pub(crate) fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field(
            "addr",
            &self
                .client
                .as_ref()
                .map(|c| c.get_connection_info().addr().to_string()),
        )
        .field("prefix", &self.prefix)
        .field("timeout", &self.timeout)
        .field("on_change", &self.on_change.as_ref().map(|_| "set"));
    }

    /// The connection, prefix and callback, checked: the URL, a non-zero
    /// timeout, a non-empty prefix.
    pub(crate) fn build(self) -> Result<(Arc<Conn>, String, Option<OnChange>), BuildError> {
        let conn = Arc::new(Conn::new(self.client?, self.timeout)?);
        if self.prefix.is_empty() {
            return Err(BuildError::EmptyPrefix);
        }
        Ok((conn, self.prefix, self.on_change))
    }
}

/// Calls the `on_change` callback, if any; a panic in it is logged, not
/// propagated.
pub(crate) fn notify(on_change: Option<&OnChange>, change: Availability) {
    if let Some(f) = on_change {
        if std::panic::catch_unwind(AssertUnwindSafe(|| f(change))).is_err() {
            tracing::error!(target: LOG_TARGET, "the on_change callback panicked");
        }
    }
}

/// First wait before trying Redis again after a failure; doubles up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// No answer within the timeout.
struct Late;

/// What came of running a command.
pub(crate) enum Answer<T> {
    /// Redis answered. `recovered`: this ended an outage that long.
    Ok {
        value: T,
        recovered: Option<Duration>,
    },
    /// Redis is down (now or recently). `started`: this failure began the
    /// outage, for this reason (password redacted); log it once.
    Down { started: Option<String> },
}

pub(crate) struct Conn {
    client: Client,
    addr: String,
    password: Option<String>,
    timeout: Duration,
    state: Mutex<State>,
    /// Watchpost's runtime and availability reports, once a `Watchpost`
    /// started with this connection's store.
    attached: OnceLock<SharedContext>,
    /// Set when the connection serves a store's alerts and its rate limits
    /// both (a `Watchpost`'s shared state): whether those fail closed.
    limits_fail_closed: OnceLock<bool>,
}

#[derive(Default)]
struct State {
    manager: Option<ConnectionManager>,
    outage: Option<Outage>,
}

struct Outage {
    since: Instant,
    retry_at: Instant,
    wait: Duration,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub(crate) fn new(client: Client, timeout: Duration) -> Result<Self, BuildError> {
        if timeout.is_zero() {
            return Err(BuildError::ZeroTimeout);
        }
        let info = client.get_connection_info();
        let addr = info.addr().to_string();
        let password = info
            .redis_settings()
            .password()
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        Ok(Self {
            client,
            addr,
            password,
            timeout,
            state: Mutex::default(),
            attached: OnceLock::new(),
            limits_fail_closed: OnceLock::new(),
        })
    }

    /// Runs the connection on watchpost's thread from now on, and reports
    /// changes of availability to the `Watchpost`.
    pub(crate) fn attach(&self, context: SharedContext) {
        if self.attached.set(context).is_err() {
            return;
        }
        // An outage that began before (the alerter's first look at its
        // outbox runs as its thread starts) is told now, or it never is.
        if !self.is_available() {
            if let Some(context) = self.attached.get() {
                context.report(Availability::Unavailable);
            }
        }
    }

    /// This connection also serves rate limits failing open or closed.
    pub(crate) fn serves_limits(&self, fail_closed: bool) {
        let _ = self.limits_fail_closed.set(fail_closed);
    }

    /// Tells the `Watchpost` (if attached) and `own` of a change.
    pub(crate) fn report(&self, own: Option<&OnChange>, change: Availability) {
        notify(own, change);
        if let Some(context) = self.attached.get() {
            context.report(change);
        }
    }

    /// The log line for the start of an outage: `component`'s words, or
    /// the whole story when this connection serves alerts and rate limits.
    pub(crate) fn outage_line(&self, reason: &str, component: String) -> String {
        match self.limits_fail_closed.get() {
            None => component,
            Some(&closed) => {
                let limits = if closed {
                    "rejects every request (fail closed)"
                } else {
                    "allows every request (fail open)"
                };
                format!(
                    "shared state unavailable (redis {}: {reason}); alerts are deduplicated \
                     in this process and rate limiting {limits} until it is back",
                    self.addr
                )
            }
        }
    }

    /// `host:port`, never the password.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the last command worked (`true` before the first).
    pub(crate) fn is_available(&self) -> bool {
        self.lock().outage.is_none()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watchpost's runtime, once attached.
    fn driver_runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.attached.get().map(SharedContext::runtime)
    }

    /// The connection, or `None` while waiting to retry a failed Redis.
    /// The manager's tasks run on watchpost's thread once attached (before
    /// that, on the runtime that first asks).
    pub(crate) fn connection(&self) -> Option<ConnectionManager> {
        let mut state = self.lock();
        if state
            .outage
            .as_ref()
            .is_some_and(|o| Instant::now() < o.retry_at)
        {
            return None;
        }
        if let Some(manager) = &state.manager {
            return Some(manager.clone());
        }
        // One attempt per command, bounded by our timeout: retries are
        // ours (see `failed`), so a down Redis costs nothing per command.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let _runtime = self.driver_runtime().map(tokio::runtime::Handle::enter);
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config).ok()?;
        state.manager = Some(manager.clone());
        Some(manager)
    }

    /// Runs `command` on Redis within the timeout.
    pub(crate) async fn run<T, F, Fut>(&self, command: F) -> Answer<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(conn) = self.connection() else {
            return Answer::Down { started: None };
        };
        let result = tokio::time::timeout(self.timeout, command(conn)).await;
        self.settle(result.map_err(|_| Late), self.timeout)
    }

    /// Runs `command` on Redis within the timeout, on watchpost's thread
    /// once attached (so the connection serves every runtime alike:
    /// actix-web runs one per worker thread, and a connection living on
    /// one worker would stall every worker's checks whenever that one is
    /// busy); the caller only waits for the answer.
    pub(crate) async fn run_on_driver<T, F, Fut>(&self, timeout: Duration, command: F) -> Answer<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(conn) = self.connection() else {
            return Answer::Down { started: None };
        };
        let Some(runtime) = self.driver_runtime() else {
            let result = tokio::time::timeout(timeout, command(conn)).await;
            return self.settle(result.map_err(|_| Late), timeout);
        };
        let task = runtime.spawn(command(conn));
        let result = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => Ok(result),
            // The task panicked or its runtime is gone: as good as no answer.
            Ok(Err(_)) | Err(_) => Err(Late),
        };
        self.settle(result, timeout)
    }

    /// What a command's result means for the connection's state.
    fn settle<T>(&self, result: Result<RedisResult<T>, Late>, timeout: Duration) -> Answer<T> {
        match result {
            Ok(Ok(value)) => {
                let recovered = self.lock().outage.take().map(|o| o.since.elapsed());
                Answer::Ok { value, recovered }
            }
            Ok(Err(e)) => {
                let reason = if e.is_io_error() || e.is_connection_dropped() {
                    format!("connection failed: {e}")
                } else {
                    format!("command failed: {e}")
                };
                self.failed(&reason)
            }
            Err(Late) => self.failed(&format!("no answer within {timeout:?}")),
        }
    }

    fn failed<T>(&self, reason: &str) -> Answer<T> {
        let now = Instant::now();
        let mut state = self.lock();
        // A fresh manager next time, on the runtime that asks.
        state.manager = None;
        match &mut state.outage {
            Some(o) => {
                o.wait = (o.wait * 2).min(MAX_RETRY);
                o.retry_at = now + o.wait;
                Answer::Down { started: None }
            }
            None => {
                state.outage = Some(Outage {
                    since: now,
                    retry_at: now + FIRST_RETRY,
                    wait: FIRST_RETRY,
                });
                drop(state);
                Answer::Down {
                    started: Some(self.redact(reason)),
                }
            }
        }
    }

    /// `text` with the password, if any, replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.password {
            Some(p) => text.replace(p.as_str(), "***"),
            None => text.to_owned(),
        }
    }
}
