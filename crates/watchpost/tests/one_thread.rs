//! A `Watchpost` starts exactly one thread, whatever it runs (alert
//! delivery, monitors, heartbeats, thresholds, background health checks),
//! reports panics without being kept alive by the hook, and its thread
//! ends once it and its parts are dropped.
//!
//! One test in its own binary: it counts the process's threads and owns
//! the process-wide panic hook.

#![cfg(all(feature = "test-util", target_os = "linux"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use watchpost::alert::{Alert, MemorySink};
use watchpost::checks::fn_check;
use watchpost::monitor::{Heartbeat, ThresholdWatcher};
use watchpost::Watchpost;

const HANG: Duration = Duration::from_secs(30);

/// The names of this process's threads, counted.
fn threads() -> HashMap<String, usize> {
    let mut names = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let comm = task.unwrap().path().join("comm");
        // A thread may end between listing and reading.
        if let Ok(name) = std::fs::read_to_string(comm) {
            *names.entry(name.trim().to_owned()).or_insert(0) += 1;
        }
    }
    names
}

/// What `after` has that `before` hadn't.
fn started(before: &HashMap<String, usize>, after: &HashMap<String, usize>) -> Vec<String> {
    let mut new = Vec::new();
    for (name, &n) in after {
        for _ in before.get(name).copied().unwrap_or(0)..n {
            new.push(name.clone());
        }
    }
    new.sort();
    new
}

#[test]
fn one_thread_whatever_runs_and_none_once_dropped() {
    let before = threads();
    assert!(!before.contains_key("watchpost"), "{before:?}");

    let sink = MemorySink::new();
    let wp = Watchpost::builder()
        .sink(sink.clone())
        .readiness("db", fn_check(|| async { true }))
        .liveness("worker", fn_check(|| async { true }))
        .check_interval(Duration::from_secs(1))
        .rate_limit("100/min".parse().unwrap())
        .build()
        .unwrap();
    let heartbeat = Heartbeat::builder("nightly", Duration::from_secs(3600))
        .alerter(wp.alerter())
        .build()
        .unwrap();
    let queue = ThresholdWatcher::builder("queue", wp.alerter())
        .fire_above(1000.0)
        .resolve_below(100.0)
        .build()
        .unwrap();
    queue.observe(5.0);
    heartbeat.beat();

    // Everything runs: an alert, an incident, a few ticks and check runs.
    wp.send(Alert::error("Stripe webhook failing"));
    wp.fire("queue-depth", Alert::warning("Queue depth 1200"));
    assert!(sink.wait_for(2, HANG));
    let deadline = Instant::now() + HANG;
    while wp.health().last_background_run().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(wp.health().last_background_run().is_some());
    assert_eq!(started(&before, &threads()), ["watchpost"]);
    assert_eq!(wp.status().threads, ["watchpost"]);
    assert!(wp.status().panic_hook);

    // A panic on a thread of the application reaches the handle's sink.
    let _ = std::thread::Builder::new()
        .name("job".into())
        .spawn(|| panic!("the nightly job broke"))
        .unwrap()
        .join();
    assert!(sink.wait_for(3, HANG));
    let panic = sink.notifications().pop().unwrap();
    assert_eq!(panic.alert().title(), "panic: the nightly job broke");
    assert_eq!(started(&before, &threads()), ["watchpost"]);

    // Dropped, with its parts: the thread ends (the hook keeps nothing
    // alive).
    drop((wp, heartbeat, queue));
    let deadline = Instant::now() + HANG;
    while threads().contains_key("watchpost") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!threads().contains_key("watchpost"), "{:?}", threads());

    // A second handle in the same process gets its own thread, and the
    // hook reports to it.
    let second = MemorySink::new();
    let wp = Watchpost::builder().sink(second.clone()).build().unwrap();
    assert_eq!(started(&before, &threads()), ["watchpost"]);
    let _ = std::thread::spawn(|| panic!("again")).join();
    assert!(second.wait_for(1, HANG));
    assert_eq!(second.notifications()[0].alert().title(), "panic: again");
    drop(wp);
}
