//! The outbox on a real Redis: alerts a sink has not received survive the
//! process (the next one delivers them, once), an owner that died is taken
//! over once its lease is gone, and two processes taking over at once
//! deliver each alert once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use watchpost::alert::{Alert, AlertStore, Alerter, OutboxRecord, TelegramSink};
use watchpost_redis::RedisStore;
use watchpost_testkit::fake_http::{telegram_ok, telegram_texts, FakeHttp, Reply};

use common::Redis;

const TOKEN: &str = "123456:OUTBOX-token";
/// Only catches hangs.
const HANG: Duration = Duration::from_secs(30);

fn store(redis: &Redis) -> RedisStore {
    RedisStore::builder(&redis.url)
        .prefix(redis.prefix.clone())
        .build()
        .unwrap()
}

fn alerter(redis: &Redis, server: &FakeHttp) -> Alerter {
    let sink = TelegramSink::builder(TOKEN, "-1001")
        .api_url(server.url())
        .build()
        .unwrap();
    Alerter::builder()
        .service("checkout-api")
        .sink(sink)
        .store(Arc::new(store(redis)))
        .build()
        .unwrap()
}

fn texts(server: &FakeHttp) -> Vec<String> {
    telegram_texts(server)
}

fn records(redis: &Redis) -> Vec<String> {
    redis
        .keys()
        .into_iter()
        .filter(|k| k.contains(":outbox:rec:"))
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn what_a_down_sink_did_not_get_is_delivered_by_the_next_process() {
    let Some(redis) = Redis::get("outbox-restart") else {
        return;
    };
    let down = FakeHttp::start(Reply::text(502, "Bad Gateway"));
    let first = alerter(&redis, &down);
    first.send(Alert::critical("panic: index out of bounds").key("panic:src/main.rs:42"));
    first.fire("health:db", Alert::error("Health check db failing"));
    wait_until("both tried", || {
        down.requests().len() >= 2 || records(&redis).len() == 2
    });
    wait_until("both kept", || records(&redis).len() == 2);
    assert!(!first.flush(Duration::from_millis(300)), "the sink is down");
    let stats = first.sink_stats();
    drop(first);
    assert_eq!(stats[0].given_up.total(), 0, "{stats:?}");
    assert_eq!(records(&redis).len(), 2, "kept for the next process");

    let up = FakeHttp::start(telegram_ok());
    let second = alerter(&redis, &up);
    wait_until("both delivered", || up.requests().len() >= 2);
    assert!(second.flush(HANG));
    std::thread::sleep(Duration::from_millis(300));
    let got = texts(&up);
    assert_eq!(got.len(), 2, "each once: {got:#?}");
    assert!(
        got.iter().any(|t| t.contains("panic: index out of bounds")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|t| t.contains("FIRING") && t.contains("db failing")),
        "{got:#?}"
    );
    wait_until("the records acknowledged", || records(&redis).is_empty());
    drop(second);

    // A third process has nothing left to send.
    let third_server = FakeHttp::start(telegram_ok());
    let third = alerter(&redis, &third_server);
    std::thread::sleep(Duration::from_millis(500));
    assert!(third.flush(HANG));
    assert!(
        third_server.requests().is_empty(),
        "{:#?}",
        texts(&third_server)
    );
}

/// A record of an owner that died (its lease gone), made from one a live
/// alerter wrote.
fn orphan(redis: &Redis, store: &RedisStore) -> OutboxRecord {
    let down = FakeHttp::start(Reply::text(502, "Bad Gateway"));
    let writer = alerter(redis, &down);
    writer.send(Alert::error("Stripe webhook failed").key("stripe"));
    wait_until("the record", || records(redis).len() == 1);
    let key = records(redis).remove(0);
    let body: String = redis::cmd("HGET")
        .arg(&key)
        .arg("body")
        .query(&mut redis.conn())
        .unwrap();
    // The writer goes, leaving nothing (its record is taken out by hand
    // below): only the orphan remains.
    let id = key.rsplit(':').next().unwrap().to_owned();
    drop(writer);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query(&mut redis.conn())
        .unwrap();
    let record = OutboxRecord::new(
        format!("{id}-orphan"),
        vec!["telegram".to_owned()],
        std::time::SystemTime::now() + Duration::from_secs(600),
        body,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.outbox_put("dead-host:4242:0000", &record))
        .unwrap();
    // The owner died: nobody renews its lease, and it expires.
    let lease = format!("{}:outbox:lease:dead-host:4242:0000", redis.prefix);
    let _: () = redis::cmd("DEL")
        .arg(&lease)
        .query(&mut redis.conn())
        .unwrap();
    record
}

#[test]
fn an_owner_that_died_is_taken_over_once_by_one_of_two_processes() {
    let Some(redis) = Redis::get("outbox-orphan") else {
        return;
    };
    let store = store(&redis);
    orphan(&redis, &store);
    assert_eq!(records(&redis).len(), 1);

    // Two replicas start at once: one of them delivers it.
    let a = FakeHttp::start(telegram_ok());
    let b = FakeHttp::start(telegram_ok());
    let (alerter_a, alerter_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| alerter(&redis, &a));
        let tb = s.spawn(|| alerter(&redis, &b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    wait_until("the orphan delivered", || {
        a.requests().len() + b.requests().len() >= 1
    });
    assert!(alerter_a.flush(HANG) && alerter_b.flush(HANG));
    std::thread::sleep(Duration::from_millis(500));
    let all: Vec<String> = texts(&a).into_iter().chain(texts(&b)).collect();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(all[0].contains("Stripe webhook failed"), "{all:#?}");
    wait_until("the record acknowledged", || records(&redis).is_empty());
}

#[test]
fn a_live_owner_keeps_its_records() {
    let Some(redis) = Redis::get("outbox-live") else {
        return;
    };
    let down = FakeHttp::start(Reply::text(502, "Bad Gateway"));
    let owner = alerter(&redis, &down);
    owner.send(Alert::error("Queue stuck").key("queue"));
    wait_until("the record", || records(&redis).len() == 1);
    // Another process running meanwhile must not take it.
    let other_server = FakeHttp::start(telegram_ok());
    let other = alerter(&redis, &other_server);
    std::thread::sleep(Duration::from_millis(500));
    assert!(other.flush(HANG));
    assert!(
        other_server.requests().is_empty(),
        "{:#?}",
        texts(&other_server)
    );
    assert_eq!(records(&redis).len(), 1);
    // Once the sink is back, the owner delivers it and the record goes.
    down.set_default(telegram_ok());
    assert!(owner.flush(HANG));
    wait_until("the record acknowledged", || records(&redis).is_empty());
    assert!(texts(&down).iter().any(|t| t.contains("Queue stuck")));
}
