//! Redis down: alerts are still delivered (deduplicated in the process),
//! one warning is logged, the callback is called once, and the password
//! never shows. Recovery (needs `REDIS_URL`) is automatic and logged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use watchpost::alert::{Alert, AlertStore, Alerter, Claim, MemorySink};
use watchpost_redis::{Availability, RedisStore};

use common::{closed_port, lines_about, proxy, redis_addr, Redis};
use watchpost_testkit::logs;

const HANG: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(60);

type Changes = Arc<Mutex<Vec<Availability>>>;

fn store(addr: SocketAddr) -> (RedisStore, Changes) {
    let changes = Changes::default();
    let store = RedisStore::builder(&format!("redis://:s3cret@{addr}"))
        .on_change({
            let changes = changes.clone();
            move |c| changes.lock().unwrap().push(c)
        })
        .build()
        .unwrap();
    (store, changes)
}

#[test]
fn alerts_are_delivered_and_deduplicated_locally_when_redis_is_down() {
    logs::capture_global();
    let addr = closed_port();
    let (store, changes) = store(addr);
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .sink(sink.clone())
        .store(Arc::new(store.clone()))
        .build()
        .unwrap();

    let start = Instant::now();
    for i in 0..3 {
        alerter.send(Alert::error("alert").key(format!("k{i}")));
        alerter.send(Alert::error("alert").key(format!("k{i}")));
    }
    alerter.fire("db", Alert::critical("db down"));
    alerter.fire("db", Alert::critical("db down"));
    alerter.resolve("db");
    assert!(alerter.flush(HANG));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(sink.len(), 5, "3 alerts, firing, resolved");
    assert!(!store.is_available());
    assert_eq!(*changes.lock().unwrap(), [Availability::Unavailable]);

    let lines = lines_about(addr);
    let warnings: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("shared alert state unavailable"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {lines:#?}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    let all = logs::captured();
    assert!(!all.contains("s3cret"), "{all}");
    assert!(!format!("{store:?}").contains("s3cret"));
}

#[test]
fn recovery_is_automatic_and_logged_once() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipped: set REDIS_URL");
        return;
    };
    logs::capture_global();
    let info = redis::Client::open(url.as_str()).unwrap();
    let redis_addr = redis_addr(&url);
    // The proxy has no password to forward, so test without one.
    let addr = closed_port();
    let changes = Changes::default();
    let store = RedisStore::builder(&format!("redis://{addr}"))
        .prefix(format!("watchpost-test:recovery:{}", std::process::id()))
        .on_change({
            let changes = changes.clone();
            move |c| changes.lock().unwrap().push(c)
        })
        .build()
        .unwrap();
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .sink(sink.clone())
        .store(Arc::new(store.clone()))
        .build()
        .unwrap();

    alerter.send(Alert::error("before"));
    assert!(alerter.flush(HANG));
    assert!(!store.is_available());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    proxy(&runtime, addr, redis_addr);

    // The store retries after 1 s; keep sending until it is back.
    let deadline = Instant::now() + HANG;
    let mut i = 0;
    while !store.is_available() {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(300));
        alerter.send(Alert::error("during").key(format!("during {i}")));
        assert!(alerter.flush(HANG));
        i += 1;
    }
    let changes = changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(matches!(changes[1], Availability::Recovered { .. }));
    let lines = lines_about(addr);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("available again"))
            .count(),
        1,
        "{lines:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("unavailable")).count(),
        1,
        "{lines:#?}"
    );
    assert_eq!(sink.len(), i + 1, "nothing lost");

    // Clean up what the last alerts left in Redis.
    let mut conn = info.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("watchpost-test:recovery:{}:*", std::process::id()))
        .query(&mut conn)
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query(&mut conn).unwrap();
    }
}

/// What the local fallback counts while Redis is down reaches the next
/// shared message once it is back: delivered by this replica (the count
/// rides on its claim) or by another (the count is added in Redis).
#[test]
fn counts_made_during_an_outage_are_not_lost_on_recovery() {
    let Some(redis) = Redis::get("outage-counts") else {
        return;
    };
    let redis_addr = redis_addr(&redis.url);
    let addr = closed_port();
    let a = RedisStore::builder(&format!("redis://{addr}"))
        .prefix(&redis.prefix)
        .build()
        .unwrap();
    let other = RedisStore::builder(&redis.url)
        .prefix(&redis.prefix)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let claim = |store: &RedisStore, key: &str, at: SystemTime, similar: u64| {
        runtime
            .block_on(store.claim(key, at, WINDOW, similar))
            .unwrap()
    };
    let t0 = SystemTime::now();
    // Down: A dedupes alone and counts 1 + (2 + 1) for k1, 1 for k2.
    assert_eq!(claim(&a, "k1", t0, 1), Claim::Deliver { similar: 1 });
    assert_eq!(claim(&a, "k1", t0, 2), Claim::Suppressed);
    assert_eq!(claim(&a, "k2", t0, 0), Claim::Deliver { similar: 0 });
    assert_eq!(claim(&a, "k2", t0, 0), Claim::Suppressed);
    assert!(!a.is_available());

    proxy(&runtime, addr, redis_addr);
    let deadline = Instant::now() + HANG;
    while !a.is_available() {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(300));
        let _ = claim(&a, "probe", t0, 0);
    }

    // k1: A delivers next, and says how many it suppressed meanwhile.
    let later = t0 + WINDOW + Duration::from_secs(1);
    assert_eq!(claim(&a, "k1", later, 1), Claim::Deliver { similar: 3 + 1 });
    // k2: another replica holds the window; A's count goes into Redis and
    // the other replica's next message carries it.
    assert_eq!(claim(&other, "k2", later, 0), Claim::Deliver { similar: 0 });
    assert_eq!(claim(&a, "k2", later, 0), Claim::Suppressed);
    let counted: u64 = redis::cmd("GET")
        .arg(format!("{}:suppressed:k2", redis.prefix))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(counted, 1 + 1, "the outage's count and this one");
    // Once the window ends (in Redis's time: end it now), the other
    // replica's next message carries them.
    let _: () = redis::cmd("DEL")
        .arg(format!("{}:dedupe:k2", redis.prefix))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(
        claim(&other, "k2", later, 0),
        Claim::Deliver { similar: 1 + 1 }
    );
}
