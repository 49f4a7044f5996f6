//! What the Redis tests share: the Redis at `REDIS_URL` under a prefix no
//! other test or run uses, a closed port, the log lines about an address.

#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use watchpost_testkit::logs;

/// `REDIS_URL` and a key prefix of its own; the prefix's keys are deleted
/// when the guard drops.
pub(crate) struct Redis {
    pub(crate) url: String,
    pub(crate) prefix: String,
}

impl Redis {
    /// `None` (and a "skipped" line) without `REDIS_URL`; with it, Redis
    /// must answer, or the test fails loudly.
    pub(crate) fn get(tag: &str) -> Option<Self> {
        let Ok(url) = std::env::var("REDIS_URL") else {
            println!("skipped: set REDIS_URL");
            return None;
        };
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let redis = Self {
            prefix: format!(
                "watchpost-test:{tag}:{}:{nanos}:{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            url,
        };
        let _: String = redis::cmd("PING").query(&mut redis.conn()).expect("PING");
        Some(redis)
    }

    /// A plain connection, to inspect keys.
    pub(crate) fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("REDIS_URL is set but Redis is unreachable: {e}"))
    }

    /// Every key under the prefix.
    pub(crate) fn keys(&self) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut self.conn())
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let keys = self.keys();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query(&mut self.conn()).unwrap();
        }
    }
}

/// An address nothing listens on.
pub(crate) fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The captured log lines that mention `addr`.
pub(crate) fn lines_about(addr: SocketAddr) -> Vec<String> {
    logs::captured()
        .lines()
        .filter(|l| l.contains(&addr.to_string()))
        .map(str::to_owned)
        .collect()
}

/// The address of the Redis at `url` (an IP address: the proxies below
/// connect to it).
pub(crate) fn redis_addr(url: &str) -> SocketAddr {
    redis::Client::open(url)
        .unwrap()
        .get_connection_info()
        .addr()
        .to_string()
        .parse()
        .expect("REDIS_URL with an IP address")
}

/// A TCP proxy from `addr` to Redis at `redis`, on `runtime`, started
/// later than the code under test: Redis "comes back".
pub(crate) fn proxy(runtime: &tokio::runtime::Runtime, addr: SocketAddr, redis: SocketAddr) {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .unwrap();
    runtime.spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(redis).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}
