//! [`SqliteStore`]: dedupe, incidents and the outbox in one SQLite file, for
//! one machine: processes that come and go (a restart, cron jobs, the
//! `watchpost` command) share them through the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::outbox::OutboxRecord;
use super::store::{AlertStore, Claim, StoreError, StoreFuture};

/// How long a writer waits for another process's transaction.
const BUSY: Duration = Duration::from_secs(5);

/// Dedupe rows are forgotten this long after their window ended (their
/// suppressed count with them).
const KEEP_DEDUPE: Duration = Duration::from_secs(24 * 3600);

/// Outbox records are forgotten this long after their deadline.
const KEEP_RECORDS: Duration = Duration::from_secs(3600);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL,
    suppressed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS incidents (
    key TEXT PRIMARY KEY,
    started_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    body TEXT NOT NULL,
    deadline_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_owner ON outbox (owner);
CREATE TABLE IF NOT EXISTS outbox_sinks (
    id TEXT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    sink TEXT NOT NULL,
    PRIMARY KEY (id, sink)
);
CREATE TABLE IF NOT EXISTS leases (
    owner TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL
);
";

/// An [`AlertStore`] in a SQLite file: alert dedupe, incidents and the
/// outbox shared by every process on the machine that opens the same file,
/// and kept across restarts.
///
/// A process that restarts (or crashes, or dies of a panic) while a sink is
/// down leaves its undelivered alerts in the file, and the next one
/// delivers them (see [`OutboxRecord`]); two cron jobs alerting about the
/// same thing within the dedupe window send one message; an incident a
/// job fired is resolved by a later run. For replicas on several machines,
/// use Redis (`watchpost-redis`) instead.
///
/// The file is in WAL mode: a write interrupted by a crash or a `kill -9`
/// never corrupts it, and readers never wait for writers. Every table is
/// bounded: dedupe rows are forgotten a day after their window, outbox
/// records an hour after their deadline. Calls are short local writes,
/// made on watchpost's thread (no thread of its own).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use watchpost::alert::{Alert, Alerter, SqliteStore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("watchpost-doc-{}", std::process::id()));
/// let store = SqliteStore::open(dir.join("state.db"))?;
/// let alerter = Alerter::builder().store(Arc::new(store)).build()?;
/// alerter.send(Alert::error("backup failed"));
/// # drop(alerter); let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl SqliteStore {
    /// Opens (or creates, with its directory) the store at `path`.
    ///
    /// # Errors
    ///
    /// The directory or the file can't be created or opened, or it is not
    /// a database this store can use; the error names the path.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let failed = |what: &str, e: &dyn fmt::Display| {
            StoreError::new(format!("{what} {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| failed("cannot create the directory of", &e))?;
        }
        let conn = Connection::open(&path).map_err(|e| failed("cannot open", &e))?;
        conn.busy_timeout(BUSY)
            .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| failed("cannot use", &e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path,
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one immediate transaction (other processes wait for it,
    /// up to 5 s), committed if it returns `Ok`.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.error(&e))?;
        let value = f(&tx).map_err(|e| self.error(&e))?;
        tx.commit().map_err(|e| self.error(&e))?;
        Ok(value)
    }

    fn error(&self, e: &rusqlite::Error) -> StoreError {
        StoreError::new(format!("sqlite {}: {e}", self.inner.path.display()))
    }
}

impl AlertStore for SqliteStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        at: SystemTime,
        window: Duration,
        similar: u64,
    ) -> StoreFuture<'a, Claim> {
        let at_ms = unix_ms(at);
        let similar = i64::try_from(similar).unwrap_or(i64::MAX / 2);
        let result = self.write(|tx| {
            let row: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT until_ms, suppressed FROM dedupe WHERE key = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let claim = match row {
                Some((until, _)) if until > at_ms => {
                    tx.execute(
                        "UPDATE dedupe SET suppressed = suppressed + ?2 WHERE key = ?1",
                        params![key, similar.saturating_add(1)],
                    )?;
                    Claim::Suppressed
                }
                row => {
                    let before = row.map_or(0, |(_, n)| n);
                    tx.execute(
                        "INSERT INTO dedupe (key, until_ms, suppressed) VALUES (?1, ?2, 0)
                         ON CONFLICT (key) DO UPDATE SET until_ms = ?2, suppressed = 0",
                        params![key, at_ms.saturating_add(ms(window))],
                    )?;
                    Claim::Deliver {
                        similar: u64::try_from(before.saturating_add(similar)).unwrap_or(0),
                    }
                }
            };
            tx.execute(
                "DELETE FROM dedupe WHERE until_ms < ?1",
                params![at_ms.saturating_sub(ms(KEEP_DEDUPE))],
            )?;
            Ok(claim)
        });
        Box::pin(async move { result })
    }

    fn open_incident<'a>(&'a self, key: &'a str, at: SystemTime) -> StoreFuture<'a, bool> {
        let result = self.write(|tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO incidents (key, started_ms) VALUES (?1, ?2)",
                params![key, unix_ms(at)],
            )?;
            Ok(n == 1)
        });
        Box::pin(async move { result })
    }

    fn close_incident<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        let result = self.write(|tx| {
            let started: Option<i64> = tx
                .query_row(
                    "DELETE FROM incidents WHERE key = ?1 RETURNING started_ms",
                    params![key],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(started.map(from_ms))
        });
        Box::pin(async move { result })
    }

    fn keeps_outbox(&self) -> bool {
        true
    }

    fn outbox_put<'a>(&'a self, owner: &'a str, record: &'a OutboxRecord) -> StoreFuture<'a, ()> {
        let now = unix_ms(SystemTime::now());
        let result = self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO outbox (id, owner, body, deadline_ms) VALUES (?1, ?2, ?3, ?4)",
                params![record.id, owner, record.body, unix_ms(record.deadline)],
            )?;
            for sink in &record.sinks {
                tx.execute(
                    "INSERT OR IGNORE INTO outbox_sinks (id, sink) VALUES (?1, ?2)",
                    params![record.id, sink],
                )?;
            }
            // Owned from the first record on, even before the owner's
            // first renewal.
            tx.execute(
                "INSERT INTO leases (owner, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (owner) DO UPDATE SET until_ms = max(until_ms, ?2)",
                params![owner, now.saturating_add(ms(super::outbox::LEASE))],
            )?;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn outbox_ack<'a>(
        &'a self,
        _owner: &'a str,
        id: &'a str,
        sink: &'a str,
    ) -> StoreFuture<'a, ()> {
        let result = self.write(|tx| {
            tx.execute(
                "DELETE FROM outbox_sinks WHERE id = ?1 AND sink = ?2",
                params![id, sink],
            )?;
            tx.execute(
                "DELETE FROM outbox WHERE id = ?1
                 AND NOT EXISTS (SELECT 1 FROM outbox_sinks WHERE id = ?1)",
                params![id],
            )?;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn outbox_adopt<'a>(
        &'a self,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<OutboxRecord>> {
        let now = unix_ms(SystemTime::now());
        let result = self.write(|tx| {
            tx.execute(
                "INSERT INTO leases (owner, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (owner) DO UPDATE SET until_ms = ?2",
                params![owner, now.saturating_add(ms(lease))],
            )?;
            tx.execute(
                "DELETE FROM outbox WHERE deadline_ms < ?1",
                params![now.saturating_sub(ms(KEEP_RECORDS))],
            )?;
            tx.execute("DELETE FROM leases WHERE until_ms < ?1", params![now])?;
            // Every record whose owner holds no live lease is ours now:
            // inside this transaction, no other process can take it too.
            let mut adopt = tx.prepare(
                "UPDATE outbox SET owner = ?1
                 WHERE owner != ?1 AND owner NOT IN (SELECT owner FROM leases)
                 RETURNING id, body, deadline_ms",
            )?;
            let rows: Vec<(String, String, i64)> = adopt
                .query_map(params![owner], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut sinks = tx.prepare("SELECT sink FROM outbox_sinks WHERE id = ?1")?;
            let mut records = Vec::with_capacity(rows.len());
            for (id, body, deadline) in rows {
                let names: Vec<String> = sinks
                    .query_map(params![id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                if !names.is_empty() {
                    records.push(OutboxRecord::new(id, names, from_ms(deadline), body));
                }
            }
            Ok(records)
        });
        Box::pin(async move { result })
    }

    fn outbox_release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()> {
        let result = self.write(|tx| {
            tx.execute("DELETE FROM leases WHERE owner = ?1", params![owner])?;
            Ok(())
        });
        Box::pin(async move { result })
    }
}
