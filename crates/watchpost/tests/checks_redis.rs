//! `RedisCheck` against the Redis at `REDIS_URL` (skipped without it; a
//! set but unreachable `REDIS_URL` fails), and against a closed port.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use watchpost::checks::RedisCheck;
use watchpost::health::{Check, Status};

/// The construction the docs recommend: lazy, bounded timeouts.
fn manager(url: &str) -> ConnectionManager {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1);
    ConnectionManager::new_lazy_with_config(redis::Client::open(url).unwrap(), config).unwrap()
}

#[tokio::test]
async fn passes_against_redis_with_the_round_trip() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipped: set REDIS_URL");
        return;
    };
    let check = RedisCheck::new(manager(&url));
    let result = check.check().await;
    assert_eq!(
        result.status(),
        Status::Pass,
        "REDIS_URL is set but the check failed: {result:?}"
    );
    assert_eq!(result.observed_unit(), Some("ms"));
    assert!(result.observed_value().unwrap().as_f64().unwrap() >= 0.0);
    // The same manager serves the next probe.
    assert_eq!(check.check().await.status(), Status::Pass);
}

#[tokio::test]
async fn fails_fast_against_a_closed_port_without_leaking_the_password() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("redis://:s3cret@{addr}");
    // Building the manager doesn't connect: the app starts with Redis down.
    let check = RedisCheck::new(manager(&url)).timeout(Duration::from_millis(500));
    assert!(!format!("{check:?}").contains("s3cret"));
    for _ in 0..2 {
        let start = Instant::now();
        let result = check.check().await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(result.status(), Status::Fail);
        let output = result.output().unwrap();
        assert!(output.starts_with("redis "), "{output}");
        assert!(
            !output.contains("s3cret") && !output.contains(&url),
            "{output}"
        );
    }
}
