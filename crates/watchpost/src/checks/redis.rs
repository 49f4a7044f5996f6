use std::fmt;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::health::{Check, CheckResult};

/// Passes when Redis answers `PING` within the timeout (default 2 s),
/// through the application's own [`ConnectionManager`]: no connection is
/// opened per probe. The observed value is the round trip in milliseconds.
///
/// The failure output says what went wrong (unreachable, timed out, an
/// error reply) without the URL or its password.
///
/// # Building the manager so the app starts with Redis down
///
/// `ConnectionManager::new` connects before it returns, and by default
/// retries 6 times: against a Redis that is down it fails (or waits) at
/// startup. Build it lazily instead, with bounded connect and response
/// timeouts, so the application starts, the check fails fast while Redis
/// is down, and the manager reconnects on its own once it is back:
///
/// ```no_run
/// use std::time::Duration;
/// use redis::aio::{ConnectionManager, ConnectionManagerConfig};
/// use watchpost::checks::RedisCheck;
/// use watchpost::health::HealthChecks;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open(std::env::var("REDIS_URL")?)?;
/// let config = ConnectionManagerConfig::new()
///     .set_connection_timeout(Some(Duration::from_secs(1)))
///     .set_response_timeout(Some(Duration::from_secs(1)))
///     .set_number_of_retries(1);
/// // Doesn't connect (needs a Tokio runtime): the first command does.
/// let manager = ConnectionManager::new_lazy_with_config(client, config)?;
///
/// let health = HealthChecks::builder()
///     .readiness("redis", RedisCheck::new(manager.clone()))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCheck {
    manager: ConnectionManager,
    timeout: Duration,
}

impl fmt::Debug for RedisCheck {
    // The manager's `Debug` prints its client's connection info.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCheck")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCheck {
    /// A check that pings through `manager` (pass a clone of the
    /// application's).
    pub fn new(manager: ConnectionManager) -> Self {
        Self {
            manager,
            timeout: Duration::from_secs(2),
        }
    }

    /// The timeout for the whole PING, reconnecting included.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for RedisCheck {
    /// `datastore`.
    fn component_type(&self) -> &str {
        "datastore"
    }

    async fn check(&self) -> CheckResult {
        let mut manager = self.manager.clone();
        let started = Instant::now();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut manager);
        match tokio::time::timeout(self.timeout, ping).await {
            Ok(Ok(_pong)) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                CheckResult::pass().observed((ms * 1000.0).round() / 1000.0, "ms")
            }
            Ok(Err(error)) => CheckResult::fail(describe(&error)),
            Err(_) => CheckResult::fail(format!(
                "redis PING timed out after {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }
}

/// The failure text: the kind of error, never the connection info.
fn describe(error: &redis::RedisError) -> String {
    if error.is_timeout() {
        "redis PING timed out".to_owned()
    } else if error.is_io_error() || error.is_connection_refusal() {
        "redis unreachable: connection failed".to_owned()
    } else if error.is_connection_dropped() {
        "redis connection dropped".to_owned()
    } else {
        match error.code() {
            Some(code) => format!("redis PING failed: {code} error reply"),
            None => format!("redis PING failed: {:?}", error.kind()),
        }
    }
}
