//! Misassemblies that switch protection off are said on stderr when no
//! tracing subscriber is installed, once: a server without the peer
//! address, a limiter answering 429 to a health probe, a sink that
//! disabled itself.
//!
//! Each case runs in a child process (this binary again, with
//! `WATCHPOST_LOUD_CASE` set), which has no tracing subscriber; the parent
//! reads its stderr.

#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use watchpost::alert::{Alert, Alerter, DeliverFuture, Notification, Sink, SinkError};
use watchpost::ratelimit::{RateLimitRequest, RateLimiter};

const CASE: &str = "WATCHPOST_LOUD_CASE";

fn main() {
    match std::env::var(CASE) {
        Ok(case) => child(&case),
        Err(_) => parent(),
    }
}

/// A sink whose token the API refuses.
#[derive(Debug)]
struct Refused;

impl Sink for Refused {
    fn name(&self) -> &str {
        "telegram"
    }

    fn deliver<'a>(&'a self, _: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(async { Err(SinkError::disabled("Telegram rejected the bot token (401)")) })
    }
}

fn child(case: &str) {
    let headers = http::HeaderMap::new();
    match case {
        "peerless" => {
            let limiter = RateLimiter::per_ip("10/min".parse().unwrap());
            for _ in 0..5 {
                let verdict =
                    limiter.check_request(&RateLimitRequest::new("GET", "/", None, &headers));
                assert!(
                    !verdict.ready().unwrap().is_rejected(),
                    "fails open by default"
                );
            }
            let closed = RateLimiter::per_ip("10/min".parse().unwrap()).fail_closed(true);
            let verdict = closed.check_request(&RateLimitRequest::new("GET", "/", None, &headers));
            let outcome = verdict.ready().unwrap();
            assert!(outcome.is_rejected(), "fail_closed rejects");
            assert!(outcome
                .headers()
                .any(|(name, value)| name.as_str() == "retry-after" && value == "1"));
        }
        "probe" => {
            let limiter = RateLimiter::per_ip("1/min".parse().unwrap());
            let peer: IpAddr = "203.0.113.9".parse().unwrap();
            for _ in 0..5 {
                let _ = limiter.check_request(&RateLimitRequest::new(
                    "GET",
                    "/readyz",
                    Some(peer),
                    &headers,
                ));
            }
        }
        "sink" => {
            let alerter = Alerter::builder().sink(Refused).build().unwrap();
            alerter.send(Alert::error("first"));
            alerter.send(Alert::error("second"));
            assert!(alerter.flush(Duration::from_secs(30)));
            assert_eq!(alerter.sinks().collect::<Vec<_>>(), [("telegram", false)]);
        }
        other => panic!("unknown case {other}"),
    }
}

fn run(case: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CASE, case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{case}: {stderr}");
    stderr
}

fn said_once(case: &str, stderr: &str, needle: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(
        lines.len(),
        1,
        "{case}: {needle:?} once on stderr:\n{stderr}"
    );
    assert!(
        lines[0].starts_with("[watchpost] ERROR "),
        "{case}: {}",
        lines[0]
    );
    println!("loud {case} ... ok: {}", lines[0]);
}

fn parent() {
    // Two limiters: each says it once, with what it does about it.
    let stderr = run("peerless");
    said_once(
        "peerless",
        &stderr,
        "the server does not pass the peer address, so they are let through uncounted",
    );
    said_once(
        "peerless",
        &stderr,
        "the server does not pass the peer address, so they are rejected with 429 (fail_closed)",
    );
    assert!(
        stderr.contains("watchpost_axum::serve"),
        "names the fix: {stderr}"
    );

    let stderr = run("probe");
    said_once(
        "probe",
        &stderr,
        "the rate limiter answered 429 to the health probe /readyz",
    );

    let stderr = run("sink");
    said_once(
        "sink",
        &stderr,
        "alert sink telegram is disabled for the life of the process",
    );
    println!("loud: 0 failed");
}
