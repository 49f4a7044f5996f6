//! The outbox suite: what every [`AlertStore`] that keeps an outbox must
//! do, run by each store's tests against a real backend (Redis, a SQLite
//! file). Each "process" is an `Alerter` of its own on the same store, as
//! a restarted service or another replica would be.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use watchpost::alert::{Alert, AlertStore, Alerter, OutboxRecord, TelegramSink};

use crate::fake_http::{telegram_ok, telegram_texts, FakeHttp, Reply};

/// Only catches hangs.
const HANG: Duration = Duration::from_secs(30);

const TOKEN: &str = "123456:OUTBOX-token";

/// A backend under test: a fresh store on shared state, and a look inside.
pub trait Backend: Sync {
    /// A new store on the backend's state (each call: another process).
    fn store(&self) -> Arc<dyn AlertStore>;
    /// How many outbox records the backend holds.
    fn records(&self) -> usize;
    /// The body and id of one record it holds.
    fn any_record(&self) -> (String, String);
    /// Deletes the record `id`.
    fn delete_record(&self, id: &str);
    /// Ends `owner`'s lease, as if it died long ago.
    fn expire_lease(&self, owner: &str);
}

fn alerter(backend: &dyn Backend, server: &FakeHttp) -> Alerter {
    let sink = TelegramSink::builder(TOKEN, "-1001")
        .api_url(server.url())
        .build()
        .unwrap();
    Alerter::builder()
        .service("checkout-api")
        .sink(sink)
        .store(backend.store())
        .build()
        .unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs every case.
pub fn run(backend: &dyn Backend) {
    restart(backend);
    dead_owner(backend);
    live_owner(backend);
}

/// What a down sink did not get is delivered by the next process, once.
pub fn restart(backend: &dyn Backend) {
    let down = FakeHttp::start(Reply::text(502, "Bad Gateway"));
    let first = alerter(backend, &down);
    first.send(Alert::critical("panic: index out of bounds").key("panic:src/main.rs:42"));
    first.fire("health:db", Alert::error("Health check db failing"));
    wait_until("both kept", || backend.records() == 2);
    assert!(!first.flush(Duration::from_millis(300)), "the sink is down");
    let stats = first.sink_stats();
    drop(first);
    assert_eq!(stats[0].given_up.total(), 0, "{stats:?}");
    assert_eq!(backend.records(), 2, "kept for the next process");

    let up = FakeHttp::start(telegram_ok());
    let second = alerter(backend, &up);
    wait_until("both delivered", || up.requests().len() >= 2);
    assert!(second.flush(HANG));
    std::thread::sleep(Duration::from_millis(300));
    let got = telegram_texts(&up);
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
    wait_until("the records acknowledged", || backend.records() == 0);
    drop(second);

    // A third process has nothing left to send.
    let third_server = FakeHttp::start(telegram_ok());
    let third = alerter(backend, &third_server);
    std::thread::sleep(Duration::from_millis(500));
    assert!(third.flush(HANG));
    assert!(
        third_server.requests().is_empty(),
        "{:#?}",
        telegram_texts(&third_server)
    );
}

/// The records of an owner that died are taken over once its lease is
/// gone, by exactly one of two processes starting at once.
pub fn dead_owner(backend: &dyn Backend) {
    // A record as a live alerter writes it, re-owned by a dead owner.
    let down = FakeHttp::start(Reply::text(502, "Bad Gateway"));
    let writer = alerter(backend, &down);
    writer.send(Alert::error("Stripe webhook failed").key("stripe"));
    wait_until("the record", || backend.records() == 1);
    let (id, body) = backend.any_record();
    drop(writer);
    backend.delete_record(&id);
    assert_eq!(backend.records(), 0);
    let dead = "dead-host:4242:0000";
    let record = OutboxRecord::new(
        format!("{id}-orphan"),
        vec!["telegram".to_owned()],
        SystemTime::now() + Duration::from_secs(600),
        body,
    );
    let store = backend.store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.outbox_put(dead, &record)).unwrap();
    backend.expire_lease(dead);

    let a = FakeHttp::start(telegram_ok());
    let b = FakeHttp::start(telegram_ok());
    let (alerter_a, alerter_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| alerter(backend, &a));
        let tb = s.spawn(|| alerter(backend, &b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    wait_until("the orphan delivered", || {
        a.requests().len() + b.requests().len() >= 1
    });
    assert!(alerter_a.flush(HANG) && alerter_b.flush(HANG));
    std::thread::sleep(Duration::from_millis(500));
    let all: Vec<String> = telegram_texts(&a)
        .into_iter()
        .chain(telegram_texts(&b))
        .collect();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(all[0].contains("Stripe webhook failed"), "{all:#?}");
    wait_until("the record acknowledged", || backend.records() == 0);
}

/// A running owner keeps its records; once its sink is back it delivers
/// them itself.
pub fn live_owner(backend: &dyn Backend) {
    let down = FakeHttp::start(Reply::text(502, "Bad Gateway"));
    let owner = alerter(backend, &down);
    owner.send(Alert::error("Queue stuck").key("queue"));
    wait_until("the record", || backend.records() == 1);
    let other_server = FakeHttp::start(telegram_ok());
    let other = alerter(backend, &other_server);
    std::thread::sleep(Duration::from_millis(500));
    assert!(other.flush(HANG));
    assert!(
        other_server.requests().is_empty(),
        "{:#?}",
        telegram_texts(&other_server)
    );
    assert_eq!(backend.records(), 1);
    down.set_default(telegram_ok());
    assert!(owner.flush(HANG));
    wait_until("the record acknowledged", || backend.records() == 0);
    assert!(telegram_texts(&down)
        .iter()
        .any(|t| t.contains("Queue stuck")));
}
