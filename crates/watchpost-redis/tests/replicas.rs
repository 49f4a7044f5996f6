//! Two Alerters with their own `RedisStore` (two replicas) against the
//! Redis at `REDIS_URL`: one message per alert, one firing/resolved pair
//! per incident. Without `REDIS_URL` these tests are skipped; with it, an
//! unreachable Redis fails them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use watchpost::alert::{Alert, Alerter, MemorySink, NotificationKind};
use watchpost_redis::RedisStore;

use common::Redis;

const HANG: Duration = Duration::from_secs(30);

trait Stores {
    fn store(&self) -> RedisStore;
}

impl Stores for Redis {
    fn store(&self) -> RedisStore {
        RedisStore::builder(&self.url)
            .prefix(&self.prefix)
            .build()
            .unwrap()
    }
}

fn replica(redis: &Redis, window: Duration) -> (Alerter, MemorySink) {
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .service("test")
        .sink(sink.clone())
        .dedupe_window(window)
        .store(Arc::new(redis.store()))
        .build()
        .unwrap();
    (alerter, sink)
}

/// Built inside a Tokio test (the "application runtime", blocked by
/// `flush` below): the store still works, on the delivery thread's runtime.
#[tokio::test]
async fn two_replicas_send_one_alert_and_count_the_other() {
    let Some(redis) = Redis::get("store") else {
        return;
    };
    let window = Duration::from_millis(800);
    let (a, sink_a) = replica(&redis, window);
    let (b, sink_b) = replica(&redis, window);

    a.send(Alert::error("payment provider down"));
    assert!(a.flush(HANG));
    b.send(Alert::error("payment provider down"));
    assert!(b.flush(HANG));
    assert_eq!((sink_a.len(), sink_b.len()), (1, 0), "one message in total");
    assert_eq!(b.stats().suppressed, 1, "counted by the store");

    // After the window, the next delivery says what the other suppressed.
    std::thread::sleep(window + Duration::from_millis(200));
    a.send(Alert::error("payment provider down"));
    assert!(a.flush(HANG));
    let sent = sink_a.notifications();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].similar(), 1, "b's suppressed alert is counted");
    assert_eq!(sink_b.len(), 0);
}

#[test]
fn two_replicas_send_one_firing_and_one_resolved() {
    let Some(redis) = Redis::get("store") else {
        return;
    };
    let (a, sink_a) = replica(&redis, Duration::from_secs(300));
    let (b, sink_b) = replica(&redis, Duration::from_secs(300));

    for alerter in [&a, &b, &a] {
        alerter.fire("db", Alert::critical("db down"));
        assert!(alerter.flush(HANG));
    }
    assert_eq!(sink_a.len() + sink_b.len(), 1, "one firing");
    assert!(redis.keys().iter().any(|k| k.ends_with(":incident:db")));

    a.resolve("db");
    assert!(a.flush(HANG));
    b.resolve("db");
    assert!(b.flush(HANG));
    let all: Vec<_> = sink_a
        .notifications()
        .into_iter()
        .chain(sink_b.notifications())
        .collect();
    assert_eq!(all.len(), 2, "one firing, one resolved: {all:?}");
    assert!(matches!(all[0].kind(), NotificationKind::Firing));
    assert!(matches!(all[1].kind(), NotificationKind::Resolved { .. }));
    assert!(
        !redis.keys().iter().any(|k| k.contains(":incident:")),
        "closed incidents leave no key"
    );
}

#[test]
fn keys_expire_and_long_keys_are_bounded() {
    let Some(redis) = Redis::get("store") else {
        return;
    };
    let (a, _sink) = replica(&redis, Duration::from_secs(60));
    let long = "x".repeat(10_000);
    a.send(Alert::error("long").key(long.clone()));
    a.fire(&long, Alert::error("long incident"));
    assert!(a.flush(HANG));

    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    // The lane acknowledges outbox records after a delivery settles the
    // flush, in its next step: wait for that (bounded only against a hang).
    let waited = std::time::Instant::now();
    let mut keys = redis.keys();
    while keys.iter().any(|k| k.contains(":outbox:rec:")) && waited.elapsed() < HANG {
        std::thread::sleep(Duration::from_millis(20));
        keys = redis.keys();
    }
    // The dedupe and incident keys, and the outbox's owner and lease (its
    // records are acknowledged and gone).
    let alert_keys = keys.iter().filter(|k| !k.contains(":outbox:")).count();
    assert_eq!(alert_keys, 2, "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(":outbox:rec:")), "{keys:?}");
    for key in keys {
        assert!(key.len() < redis.prefix.len() + 120, "{key}");
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!(ttl > 0, "{key} has a TTL");
    }
}
