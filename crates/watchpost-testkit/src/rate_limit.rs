//! The rate-limiting conformance suite.
//!
//! Every adapter mounts the same app: a handler answering `ok` to any
//! method on `/` and `/api/chat`, the health probes, all under the rate
//! limiter of [`fixture`]. The same sequence of requests (on a fake clock)
//! must get the same statuses, headers and bodies everywhere, with the
//! counts in memory ([`run`]) or in an asynchronous shared store
//! ([`run_shared`], the path a Redis-backed limiter takes).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use watchpost::checks::fn_check;
use watchpost::health::HealthChecks;
use watchpost::ratelimit::{DecisionFuture, KeyedRateLimiter, Quota, RateLimitStore, RateLimiter};
use watchpost::ManualClock;

use crate::{Harness, TestRequest, TestResponse};

/// What every adapter's app is built from.
#[derive(Debug)]
pub struct Fixture {
    /// `3/min` per IP, `/api/chat` at `1/min`, the probes exempt.
    pub limiter: RateLimiter,
    /// One passing readiness check.
    pub health: HealthChecks,
    /// The limiter's clock.
    pub clock: ManualClock,
}

/// Builds the fixture.
pub fn fixture() -> Fixture {
    let clock = ManualClock::new();
    let health = HealthChecks::builder()
        .readiness("db", fn_check(|| async { true }))
        .build()
        .expect("valid health configuration");
    let limiter = RateLimiter::per_ip("3/min".parse().expect("valid quota"))
        .route("/api/chat", "1/min".parse().expect("valid quota"))
        .exempt_health(&health)
        .clock(clock.clock());
    Fixture {
        limiter,
        health,
        clock,
    }
}

/// The fixture with its limiter's counts in a [`SlowStore`] on the
/// fixture's clock, and the store.
pub fn shared_fixture() -> (Fixture, SlowStore) {
    let mut fixture = fixture();
    let store = SlowStore::new(fixture.clock.clone());
    fixture.limiter = fixture.limiter.store(store.clone());
    (fixture, store)
}

/// A [`RateLimitStore`] that counts in memory (GCRA on a [`ManualClock`],
/// one limiter per quota) and answers only after yielding to the runtime,
/// as a store across the network would: adapters must wait for it, and
/// answer exactly as they do in memory.
#[derive(Clone, Debug)]
pub struct SlowStore {
    clock: ManualClock,
    limiters: Arc<Mutex<HashMap<Quota, KeyedRateLimiter<String>>>>,
    checks: Arc<Mutex<u64>>,
}

impl SlowStore {
    /// An empty store on `clock`.
    pub fn new(clock: ManualClock) -> Self {
        Self {
            clock,
            limiters: Arc::default(),
            checks: Arc::default(),
        }
    }

    /// How many checks it has answered.
    pub fn checks(&self) -> u64 {
        *self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RateLimitStore for SlowStore {
    fn check(&self, key: &str, quota: Quota) -> DecisionFuture {
        let limiter = self
            .limiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(quota)
            .or_insert_with(|| KeyedRateLimiter::new(quota).clock(self.clock.clock()))
            .clone();
        let (key, checks) = (key.to_owned(), self.checks.clone());
        Box::pin(async move {
            // Suspends once, so an adapter that doesn't wait is caught.
            tokio::task::yield_now().await;
            *checks.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            limiter.check(&key)
        })
    }
}

enum Step {
    Request(Expect),
    Advance(Duration),
}

struct Expect {
    method: &'static str,
    uri: &'static str,
    peer: Option<&'static str>,
    headers: Vec<(&'static str, &'static [u8])>,
    status: u16,
    /// Exact header values; `None`: must be absent.
    response_headers: Vec<(&'static str, Option<&'static str>)>,
    body: Option<&'static str>,
}

fn req(method: &'static str, uri: &'static str, peer: &'static str, status: u16) -> Expect {
    Expect {
        method,
        uri,
        peer: Some(peer),
        headers: Vec::new(),
        status,
        response_headers: Vec::new(),
        body: None,
    }
}

impl Expect {
    fn header(mut self, name: &'static str, value: &'static [u8]) -> Self {
        self.headers.push((name, value));
        self
    }
    fn has(mut self, name: &'static str, value: &'static str) -> Self {
        self.response_headers.push((name, Some(value)));
        self
    }
    fn lacks(mut self, name: &'static str) -> Self {
        self.response_headers.push((name, None));
        self
    }
    fn body(mut self, body: &'static str) -> Self {
        self.body = Some(body);
        self
    }
    fn step(self) -> Step {
        Step::Request(self)
    }
    /// Not counted: no rate-limit header at all.
    fn uncounted(self) -> Self {
        self.lacks("ratelimit")
            .lacks("ratelimit-policy")
            .lacks("x-ratelimit-remaining")
    }
    /// Allowed with `remaining` requests left (one comes back every 20 s),
    /// carried by the IETF header only.
    fn remaining(self, remaining: u32) -> Self {
        let value: &'static str = match remaining {
            2 => r#""default";r=2;t=20"#,
            1 => r#""default";r=1;t=40"#,
            _ => r#""default";r=0;t=60"#,
        };
        self.has("ratelimit", value)
            .has("ratelimit-policy", r#""default";q=3;w=60"#)
            .lacks("x-ratelimit-remaining")
    }
}

const A: &str = "203.0.113.1:40000";
const TEXT_429: &str = "Too many requests: retry in 20 seconds.\n";

fn steps() -> Vec<Step> {
    let policy = r#""default";q=3;w=60"#;
    vec![
        // The budget: 3 per minute, one back every 20 s.
        req("GET", "/", A, 200)
            .remaining(2)
            .lacks("x-ratelimit-limit")
            .lacks("retry-after")
            .body("ok")
            .step(),
        req("POST", "/", A, 200).remaining(1).step(),
        req("GET", "/anything", A, 200)
            .has("ratelimit", r#""default";r=0;t=60"#)
            .step(),
        req("GET", "/", A, 429)
            .has("retry-after", "20")
            .has("ratelimit-policy", policy)
            .has("ratelimit", r#""default";r=0;t=60"#)
            .has("x-ratelimit-limit", "3")
            .has("x-ratelimit-remaining", "0")
            .has("x-ratelimit-reset", "60")
            .has("content-type", "text/plain; charset=utf-8")
            .has("cache-control", "no-store")
            .body(TEXT_429)
            .step(),
        req("GET", "/", A, 429)
            .header("accept", b"application/json")
            .has("content-type", "application/json")
            .body(r#"{"error":"too_many_requests","retry_after":20}"#)
            .step(),
        // The probes and preflight requests are never counted or limited.
        req("GET", "/livez", A, 200).uncounted().step(),
        req("GET", "/readyz", A, 200).uncounted().step(),
        req("GET", "/readyz/db", A, 200).uncounted().step(),
        req("OPTIONS", "/", A, 200).uncounted().step(),
        // /api/chat has its own budget, separate from "/".
        req("POST", "/api/chat", A, 200)
            .has("ratelimit-policy", r#""/api/chat";q=1;w=60"#)
            .has("ratelimit", r#""/api/chat";r=0;t=60"#)
            .step(),
        req("POST", "/api/chat/stream", A, 429)
            .has("retry-after", "60")
            .step(),
        // A client behind a trusted proxy counts as itself; a forged
        // leftmost X-Forwarded-For entry changes nothing.
        req("GET", "/", "10.0.0.2:5000", 200)
            .header("x-forwarded-for", b"6.6.6.1, 198.51.100.7")
            .remaining(2)
            .step(),
        req("GET", "/", "10.0.0.3:5000", 200)
            .header("x-forwarded-for", b"6.6.6.2, 198.51.100.7")
            .remaining(1)
            .step(),
        req("GET", "/", "127.0.0.1:5000", 200)
            .header("forwarded", b"for=6.6.6.3, for=198.51.100.7;proto=https")
            .remaining(0)
            .step(),
        req("GET", "/", "10.0.0.2:5000", 429)
            .header("x-forwarded-for", b"198.51.100.8, 198.51.100.7")
            .step(),
        // An untrusted peer's forwarding headers are ignored: it is A, and
        // A is out of budget.
        req("GET", "/", A, 429)
            .header("x-forwarded-for", b"198.51.100.99")
            .step(),
        // Garbage headers never cause an error: the trusted peer counts.
        req("GET", "/", "10.9.9.9:1", 200)
            .header("x-forwarded-for", b"\xff\xfe, ,,[::1")
            .header("forwarded", b"for=\"[unclosed")
            .remaining(2)
            .step(),
        // IPv6: one /64 is one client.
        req("GET", "/", "[2001:db8:1:2::a]:1", 200)
            .remaining(2)
            .step(),
        req("GET", "/", "[2001:db8:1:2:ffff::b]:1", 200)
            .remaining(1)
            .step(),
        req("GET", "/", "[2001:db8:1:3::a]:1", 200)
            .remaining(2)
            .step(),
        // No peer address (the server doesn't provide it): not counted.
        Expect {
            peer: None,
            ..req("GET", "/", A, 200).uncounted()
        }
        .step(),
        // One allowance comes back every 20 s.
        Step::Advance(Duration::from_secs(20)),
        req("GET", "/", A, 200).remaining(0).step(),
        req("GET", "/", A, 429).step(),
    ]
}

/// Runs the sequence against the adapter `make` builds from a fresh
/// [`fixture`].
pub async fn run<F, Fut, H>(make: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = H>,
    H: Harness,
{
    let _counted = run_on(fixture(), make).await;
}

/// Runs the same sequence with the counts in a [`SlowStore`]
/// ([`shared_fixture`]): every answer must be the same as in memory.
pub async fn run_shared<F, Fut, H>(make: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = H>,
    H: Harness,
{
    let (fixture, store) = shared_fixture();
    let counted = run_on(fixture, make).await;
    assert_eq!(
        store.checks(),
        counted,
        "every counted request asks the store once"
    );
}

/// Returns how many requests were counted.
async fn run_on<F, Fut, H>(fixture: Fixture, make: F) -> u64
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = H>,
    H: Harness,
{
    let clock = fixture.clock.clone();
    let harness = make(fixture).await;
    let mut counted = 0;
    for (i, step) in steps().into_iter().enumerate() {
        let expect = match step {
            Step::Advance(by) => {
                clock.advance(by);
                continue;
            }
            Step::Request(expect) => expect,
        };
        let request = TestRequest {
            method: expect.method,
            uri: expect.uri.to_owned(),
            headers: expect
                .headers
                .iter()
                .map(|(n, v)| (*n, v.to_vec()))
                .collect(),
            peer: expect
                .peer
                .map(|p| p.parse::<SocketAddr>().expect("valid test address")),
        };
        let got = harness.call(request).await;
        check(i, &expect, &got);
        counted += u64::from(!expect.response_headers.contains(&("ratelimit", None)));
    }
    counted
}

fn check(i: usize, expect: &Expect, got: &TestResponse) {
    let ctx = format!(
        "step {i}: {} {} from {:?} -> {} {:?} {}",
        expect.method,
        expect.uri,
        expect.peer,
        got.status,
        got.headers,
        String::from_utf8_lossy(&got.body)
    );
    assert_eq!(got.status, expect.status, "status: {ctx}");
    for (name, value) in &expect.response_headers {
        assert_eq!(got.header(name), *value, "header {name}: {ctx}");
    }
    if let Some(body) = expect.body {
        assert_eq!(String::from_utf8_lossy(&got.body), body, "body: {ctx}");
    }
}
