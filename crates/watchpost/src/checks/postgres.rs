use std::fmt;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::health::{Check, CheckResult};

/// The query run when none is given: it takes a pooled connection and a
/// round trip, and touches no table.
const DEFAULT_QUERY: &str = "SELECT 1";

/// Passes when a connection can be taken from the application's sqlx
/// [`PgPool`] and a query runs on it, all within the timeout (default 2 s).
///
/// The check goes through the pool the request handlers use, so it waits
/// like a request does: when every connection is busy it fails with
/// `pool exhausted: all N connections busy` instead of hanging. It opens no
/// connection of its own beyond what the pool does. The default query is
/// `SELECT 1`; a query on a real table (see [`query`](Self::query)) also
/// catches a missing migration, revoked permissions or the wrong database.
/// The query is sent as is (simple query protocol, no prepared statement),
/// so it works behind PgBouncer too; rows it returns are ignored.
///
/// The observed value is the pool's saturation when the check started: the
/// connections in use as a percentage of the pool's maximum, unit
/// `"percent"` (`0` for an idle or not yet connected pool, `100` when
/// exhausted). It is recorded on failures too.
///
/// Failure output is one line such as `query failed: 42P01: relation "users"
/// does not exist` or `timed out after 1s connecting to the database`. It
/// never contains the connection URL or the host, and the user name is
/// replaced by `<user>`; Postgres' `DETAIL` (which may quote row data) is
/// left out.
///
/// # Building the pool
///
/// Build the application's pool with [`connect_lazy`] so that the process
/// starts, and answers `/livez`, even while Postgres is down, and give it an
/// `acquire_timeout` so handlers fail fast too (sqlx's default is 30 s):
///
/// ```no_run
/// use std::time::Duration;
/// use sqlx::postgres::PgPoolOptions;
/// use watchpost::checks::PostgresCheck;
/// use watchpost::health::HealthChecks;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgPoolOptions::new()
///     .max_connections(10)
///     .acquire_timeout(Duration::from_secs(3))
///     .connect_lazy(&std::env::var("DATABASE_URL")?)?; // no connection yet
///
/// let health = HealthChecks::builder()
///     .readiness("postgres", PostgresCheck::new(pool.clone())
///         .query("SELECT 1 FROM users LIMIT 1"))
///     .build()?;
/// // hand `pool` to the handlers
/// # Ok(()) }
/// ```
///
/// [`connect_lazy`]: sqlx::postgres::PgPoolOptions::connect_lazy
#[derive(Clone)]
pub struct PostgresCheck {
    pool: PgPool,
    query: String,
    timeout: Duration,
    acquire_timeout: Option<Duration>,
}

impl fmt::Debug for PostgresCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresCheck")
            .field("query", &self.query)
            .field("timeout", &self.timeout)
            .field("acquire_timeout", &self.effective_acquire_timeout())
            .field(
                "max_connections",
                &self.pool.options().get_max_connections(),
            )
            .finish_non_exhaustive()
    }
}

impl PostgresCheck {
    /// A check through `pool`: pass the application's own pool (a clone is
    /// cheap and shares the connections).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            query: DEFAULT_QUERY.to_owned(),
            timeout: Duration::from_secs(2),
            acquire_timeout: None,
        }
    }

    /// The query to run (default `SELECT 1`), such as
    /// `SELECT 1 FROM users LIMIT 1`. Keep it cheap: it runs on every
    /// uncached probe.
    #[must_use]
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    /// The whole check's timeout: acquiring a connection plus the query
    /// (default 2 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long to wait for a pooled connection, within
    /// [`timeout`](Self::timeout) (default: half of it, so 1 s). Shorter
    /// than the registry's timeout, an exhausted pool or a database that is
    /// down is reported as such rather than as a bare timeout.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    fn effective_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
            .unwrap_or(self.timeout / 2)
            .min(self.timeout)
    }

    async fn run(&self) -> Result<(), String> {
        if self.pool.is_closed() {
            return Err("pool closed".to_owned());
        }
        let started = Instant::now();
        let acquire_timeout = self.effective_acquire_timeout();
        // Bound to a variable so the acquire future, and the connection
        // attempt it may hold, is dropped before the pool is inspected.
        let acquired = tokio::time::timeout(acquire_timeout, self.pool.acquire()).await;
        let mut conn = match acquired {
            Ok(Ok(conn)) => conn,
            Ok(Err(sqlx::Error::PoolTimedOut)) => {
                let waited = acquire_timeout.min(self.pool.options().get_acquire_timeout());
                return Err(self.acquire_timed_out(waited));
            }
            Err(_) => return Err(self.acquire_timed_out(acquire_timeout)),
            Ok(Err(sqlx::Error::PoolClosed)) => return Err("pool closed".to_owned()),
            Ok(Err(error)) => return Err(format!("connect failed: {}", self.describe(&error))),
        };
        let remaining = self.timeout.saturating_sub(started.elapsed());
        // A `&str` has no arguments: sqlx sends it with the simple query
        // protocol. The boxed future this returns also keeps `check` `Send`.
        let query = sqlx::Executor::execute(&mut *conn, self.query.as_str());
        let executed = tokio::time::timeout(remaining, query).await;
        match executed {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("query failed: {}", self.describe(&error))),
            Err(_) => {
                // The query may still be running: don't hand this connection
                // back to the application.
                conn.close_on_drop();
                Err(format!(
                    "query timed out after {}",
                    humantime::format_duration(self.timeout)
                ))
            }
        }
    }

    fn acquire_timed_out(&self, waited: Duration) -> String {
        let waited = humantime::format_duration(waited);
        let max = self.pool.options().get_max_connections();
        let in_use = in_use(&self.pool);
        if max > 0 && in_use >= max {
            format!("pool exhausted: all {max} connections busy (waited {waited})")
        } else {
            format!("timed out after {waited} connecting to the database")
        }
    }

    /// An sqlx error as one line, without the URL, host or user name.
    fn describe(&self, error: &sqlx::Error) -> String {
        let text = match error {
            sqlx::Error::Database(db) => match db.code() {
                Some(code) => format!("{code}: {}", db.message()),
                None => db.message().to_owned(),
            },
            other => other.to_string(),
        };
        redact(&text, &self.pool.connect_options())
    }
}

impl Check for PostgresCheck {
    /// `datastore`.
    fn component_type(&self) -> &str {
        "datastore"
    }

    async fn check(&self) -> CheckResult {
        let saturation = saturation(&self.pool);
        let result = match self.run().await {
            Ok(()) => CheckResult::pass(),
            Err(output) => CheckResult::fail(output),
        };
        match saturation {
            Some(percent) => result.observed(percent, "percent"),
            None => result,
        }
    }
}

/// Connections checked out of the pool right now.
fn in_use(pool: &PgPool) -> u32 {
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    pool.size().saturating_sub(idle)
}

/// Connections in use as a percentage of the maximum, to one decimal.
fn saturation(pool: &PgPool) -> Option<f64> {
    let max = pool.options().get_max_connections();
    if max == 0 {
        return None;
    }
    let percent = f64::from(in_use(pool).min(max)) * 100.0 / f64::from(max);
    Some((percent * 10.0).round() / 10.0)
}

/// Removes what could identify the server or account from an error text:
/// connection URLs, the host (and `host:port`), and the quoted user name.
fn redact(text: &str, options: &PgConnectOptions) -> String {
    let mut text = text.to_owned();
    for scheme in ["postgres://", "postgresql://"] {
        while let Some(start) = text.find(scheme) {
            let end = text[start..]
                .find(char::is_whitespace)
                .map_or(text.len(), |len| start + len);
            text.replace_range(start..end, "<url>");
        }
    }
    let host = options.get_host();
    if !host.is_empty() {
        let host_port = format!("{host}:{}", options.get_port());
        text = replace_word(&text, &host_port, "<host>");
        text = replace_word(&text, host, "<host>");
    }
    let user = options.get_username();
    if !user.is_empty() {
        text = text.replace(&format!("\"{user}\""), "\"<user>\"");
    }
    text
}

/// Replaces `needle` where it isn't part of a longer name (`db` in `db:5432`
/// or `"db"`, not in `pgdb` or `db.internal`).
fn replace_word(text: &str, needle: &str, with: &str) -> String {
    let is_name = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-' | '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(needle) {
        let end = at + needle.len();
        let before_ok = !rest[..at].chars().next_back().is_some_and(is_name);
        let after_ok = !rest[end..].chars().next().is_some_and(is_name);
        out.push_str(&rest[..at]);
        out.push_str(if before_ok && after_ok {
            with
        } else {
            &rest[at..end]
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host("db")
            .port(6543)
            .username("app")
            .database("shop")
    }

    #[test]
    fn redacts_url_host_and_user() {
        let text = "error with configuration: postgres://app:pw@db:6543/shop is bad; \
                    db:6543 refused; \"db\" down; password authentication failed for user \"app\"";
        assert_eq!(
            redact(text, &options()),
            "error with configuration: <url> is bad; <host> refused; \"<host>\" down; \
             password authentication failed for user \"<user>\""
        );
    }

    #[test]
    fn keeps_words_that_only_contain_the_host() {
        assert_eq!(
            redact("relation \"pgdb\" on db.internal, dbx", &options()),
            "relation \"pgdb\" on db.internal, dbx"
        );
    }

    #[tokio::test]
    async fn lazy_pool_starts_idle() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options());
        assert_eq!(saturation(&pool), Some(0.0));
        let check = PostgresCheck::new(pool);
        assert_eq!(check.effective_acquire_timeout(), Duration::from_secs(1));
        assert_eq!(
            check
                .clone()
                .timeout(Duration::from_millis(300))
                .effective_acquire_timeout(),
            Duration::from_millis(150)
        );
        assert_eq!(
            check
                .acquire_timeout(Duration::from_secs(5))
                .effective_acquire_timeout(),
            Duration::from_secs(2)
        );
    }
}
