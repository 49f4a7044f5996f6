//! A `Watchpost` sharing its state through Redis still runs on one thread:
//! the connection lives on watchpost's thread, not one of its own. One test
//! in its own binary: it counts the process's threads.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::IpAddr;
use std::time::Duration;

use watchpost::alert::{Alert, MemorySink};
use watchpost::ratelimit::RateLimitRequest;
use watchpost::Watchpost;
use watchpost_redis::RedisStore;

use common::Redis;

const HANG: Duration = Duration::from_secs(30);

/// The names of this process's threads, counted.
fn threads() -> HashMap<String, usize> {
    let mut names = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        if let Ok(name) = std::fs::read_to_string(task.unwrap().path().join("comm")) {
            *names.entry(name.trim().to_owned()).or_insert(0) += 1;
        }
    }
    names
}

#[test]
fn shared_state_adds_no_thread() {
    let Some(redis) = Redis::get("one-thread") else {
        return;
    };
    // The test's own runtime, for the limiter's checks, before counting.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = threads();
    let sink = MemorySink::new();
    let wp = Watchpost::builder()
        .sink(sink.clone())
        .shared(
            RedisStore::builder(&redis.url)
                .prefix(&redis.prefix)
                .build()
                .unwrap(),
        )
        .panic_hook(false)
        .build()
        .unwrap();
    let limiter = wp.rate_limiter("10/min".parse().unwrap());
    let headers = http::HeaderMap::new();
    let peer: IpAddr = "203.0.113.70".parse().unwrap();
    for _ in 0..3 {
        let verdict =
            limiter.check_request(&RateLimitRequest::new("GET", "/", Some(peer), &headers));
        let outcome = runtime.block_on(verdict.into_future());
        assert!(!outcome.is_rejected());
    }
    wp.send(Alert::error("Payment provider down"));
    wp.send(Alert::error("Payment provider down"));
    assert!(wp.flush(HANG));
    assert_eq!(sink.len(), 1, "deduplicated through Redis");
    assert!(wp.status().shared.unwrap().available);

    let after = threads();
    let mut new: Vec<&str> = Vec::new();
    for (name, &n) in &after {
        for _ in before.get(name).copied().unwrap_or(0)..n {
            new.push(name);
        }
    }
    assert_eq!(new, ["watchpost"], "{after:?}");
}
