//! `SqliteStore` on a real file: the outbox suite (a restart delivers what
//! a down sink did not get, a dead owner's alerts are taken over once, a
//! live owner keeps its own), and dedupe and incidents shared by two
//! processes through the file.
#![cfg(all(feature = "sqlite", feature = "telegram", feature = "test-util"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use watchpost::alert::{Alert, AlertStore, Alerter, MemorySink, NotificationKind, SqliteStore};
use watchpost_testkit::outbox::{self, Backend};

/// A database file of its own, deleted with its directory on drop.
struct File {
    dir: PathBuf,
}

impl File {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "watchpost-sqlite-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("state").join("watchpost.db")
    }

    fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path()).unwrap()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Backend for File {
    fn store(&self) -> Arc<dyn AlertStore> {
        Arc::new(SqliteStore::open(self.path()).unwrap())
    }

    fn records(&self) -> usize {
        self.sql()
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .unwrap() as usize
    }

    fn any_record(&self) -> (String, String) {
        self.sql()
            .query_row("SELECT id, body FROM outbox LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
    }

    fn delete_record(&self, id: &str) {
        self.sql()
            .execute("DELETE FROM outbox WHERE id = ?1", [id])
            .unwrap();
    }

    fn expire_lease(&self, owner: &str) {
        self.sql()
            .execute("UPDATE leases SET until_ms = 0 WHERE owner = ?1", [owner])
            .unwrap();
    }
}

#[test]
fn a_restart_delivers_what_a_down_sink_did_not_get() {
    outbox::restart(&File::new("restart"));
}

#[test]
fn an_owner_that_died_is_taken_over_once_by_one_of_two_processes() {
    outbox::dead_owner(&File::new("orphan"));
}

#[test]
fn a_live_owner_keeps_its_records() {
    outbox::live_owner(&File::new("live"));
}

fn process(file: &File, sink: &MemorySink) -> Alerter {
    Alerter::builder()
        .sink(sink.clone())
        .store(file.store())
        .build()
        .unwrap()
}

#[test]
fn two_processes_on_one_file_send_one_message_and_one_incident() {
    let file = File::new("shared");
    let (sink_a, sink_b) = (MemorySink::new(), MemorySink::new());
    let (a, b) = (process(&file, &sink_a), process(&file, &sink_b));
    for alerter in [&a, &b, &a] {
        alerter.send(Alert::error("backup failed").key("backup"));
        assert!(alerter.flush(Duration::from_secs(30)));
    }
    a.fire("disk", Alert::warning("Disk 91% full"));
    assert!(a.flush(Duration::from_secs(30)));
    b.fire("disk", Alert::warning("Disk 91% full"));
    assert!(b.flush(Duration::from_secs(30)));
    // A later run resolves what an earlier one fired.
    drop(a);
    let c = process(&file, &sink_a);
    c.fire("disk", Alert::warning("Disk 91% full"));
    c.resolve("disk");
    assert!(c.flush(Duration::from_secs(30)));
    let all: Vec<_> = sink_a
        .notifications()
        .into_iter()
        .chain(sink_b.notifications())
        .collect();
    let alerts = all.iter().filter(|n| n.key() == "backup").count();
    assert_eq!(alerts, 1, "{all:#?}");
    let firing = all
        .iter()
        .filter(|n| n.kind() == NotificationKind::Firing)
        .count();
    let resolved = all
        .iter()
        .filter(|n| matches!(n.kind(), NotificationKind::Resolved { .. }))
        .count();
    assert_eq!((firing, resolved), (1, 1), "{all:#?}");
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let file = File::new("bad");
    std::fs::create_dir_all(file.path().parent().unwrap()).unwrap();
    std::fs::write(
        file.path(),
        b"this is not sqlite, just text that is long enough",
    )
    .unwrap();
    let err = SqliteStore::open(file.path()).unwrap_err().to_string();
    assert!(err.contains(&file.path().display().to_string()), "{err}");
}
