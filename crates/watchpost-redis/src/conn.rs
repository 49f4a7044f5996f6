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

use crate::BuildError;

pub(crate) const LOG_TARGET: &str = "watchpost_redis";

/// A change in whether a [`RedisStore`](crate::RedisStore) or a
/// [`RedisRateLimiter`](crate::RedisRateLimiter) reaches Redis, passed to
/// its `on_change` callback
/// ([store](crate::RedisStoreBuilder::on_change),
/// [limiter](crate::RedisRateLimiterBuilder::on_change)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Availability {
    /// Redis stopped answering: the store now dedupes in this process
    /// only; the limiter fails open (or closed).
    Unavailable,
    /// Redis answers again, after an outage this long.
    Recovered {
        /// How long Redis was unavailable.
        after: Duration,
    },
}

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
    pub(crate) fn build(
        self,
        driver: Driver,
    ) -> Result<(Conn, String, Option<OnChange>), BuildError> {
        let conn = Conn::new(self.client?, self.timeout, driver)?;
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

/// Where a connection's tasks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Driver {
    /// On the runtime of the first command (the store: the alert delivery
    /// thread's own runtime).
    Caller,
    /// On watchpost-redis's own thread ([`background`]), whatever runtime
    /// the commands come from (the limiter: actix-web runs one runtime per
    /// worker thread, and a connection living on one worker would stall
    /// every worker's checks whenever that one is busy).
    Background,
}

/// The runtime of the `watchpost-redis` thread, started on first use;
/// `None` if the thread or runtime couldn't be created (commands then run
/// on the caller's runtime).
fn background() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("watchpost-redis".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

pub(crate) struct Conn {
    client: Client,
    driver: Driver,
    addr: String,
    password: Option<String>,
    timeout: Duration,
    state: Mutex<State>,
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
    pub(crate) fn new(
        client: Client,
        timeout: Duration,
        driver: Driver,
    ) -> Result<Self, BuildError> {
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
            driver,
            addr,
            password,
            timeout,
            state: Mutex::default(),
        })
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

    /// The runtime commands are sent to, for [`Driver::Background`].
    fn driver_runtime(&self) -> Option<&'static tokio::runtime::Handle> {
        match self.driver {
            Driver::Caller => None,
            Driver::Background => background(),
        }
    }

    /// The connection, or `None` while waiting to retry a failed Redis.
    /// The manager's tasks run on the driver's runtime: the background
    /// thread's, or the one that first asks.
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
        self.settle(result.map_err(|_| Late))
    }

    /// Runs `command` on Redis within the timeout, on the driver's runtime
    /// (see [`Driver`]); the caller only waits for the answer.
    pub(crate) async fn run_on_driver<T, F, Fut>(&self, command: F) -> Answer<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = self.driver_runtime() else {
            return self.run(command).await;
        };
        let Some(conn) = self.connection() else {
            return Answer::Down { started: None };
        };
        let task = runtime.spawn(command(conn));
        let result = match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(result)) => Ok(result),
            // The task panicked or its runtime is gone: as good as no answer.
            Ok(Err(_)) | Err(_) => Err(Late),
        };
        self.settle(result)
    }

    /// What a command's result means for the connection's state.
    fn settle<T>(&self, result: Result<RedisResult<T>, Late>) -> Answer<T> {
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
            Err(Late) => self.failed(&format!("no answer within {:?}", self.timeout)),
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
