//! The outbox suite on a real Redis: alerts a sink has not received
//! survive the process (the next one delivers them, once), an owner that
//! died is taken over once its lease is gone, by one of two processes, and
//! a live owner keeps its records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use watchpost::alert::AlertStore;
use watchpost_redis::RedisStore;
use watchpost_testkit::outbox::{self, Backend};

use common::Redis;

struct OnRedis(Redis);

impl OnRedis {
    fn records(&self) -> Vec<String> {
        self.0
            .keys()
            .into_iter()
            .filter(|k| k.contains(":outbox:rec:"))
            .collect()
    }
}

impl Backend for OnRedis {
    fn store(&self) -> Arc<dyn AlertStore> {
        Arc::new(
            RedisStore::builder(&self.0.url)
                .prefix(self.0.prefix.clone())
                .build()
                .unwrap(),
        )
    }

    fn records(&self) -> usize {
        OnRedis::records(self).len()
    }

    fn any_record(&self) -> (String, String) {
        let key = OnRedis::records(self).remove(0);
        let body: String = redis::cmd("HGET")
            .arg(&key)
            .arg("body")
            .query(&mut self.0.conn())
            .unwrap();
        (key.rsplit(':').next().unwrap().to_owned(), body)
    }

    fn delete_record(&self, id: &str) {
        let key = format!("{}:outbox:rec:{id}", self.0.prefix);
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query(&mut self.0.conn())
            .unwrap();
    }

    fn expire_lease(&self, owner: &str) {
        let lease = format!("{}:outbox:lease:{owner}", self.0.prefix);
        let _: () = redis::cmd("DEL")
            .arg(&lease)
            .query(&mut self.0.conn())
            .unwrap();
    }
}

#[test]
fn a_restart_delivers_what_a_down_sink_did_not_get() {
    if let Some(redis) = Redis::get("outbox-restart") {
        outbox::restart(&OnRedis(redis));
    }
}

#[test]
fn an_owner_that_died_is_taken_over_once_by_one_of_two_processes() {
    if let Some(redis) = Redis::get("outbox-orphan") {
        outbox::dead_owner(&OnRedis(redis));
    }
}

#[test]
fn a_live_owner_keeps_its_records() {
    if let Some(redis) = Redis::get("outbox-live") {
        outbox::live_owner(&OnRedis(redis));
    }
}
