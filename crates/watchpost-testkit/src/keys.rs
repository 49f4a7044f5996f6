//! The per-route and per-key rate-limiting conformance suite.
//!
//! Every adapter mounts, from one [`Fixture`]:
//!
//! | route | answer | limited by |
//! |---|---|---|
//! | `POST /api/chat` | `200 chat` | [`Fixture::chat`], on that route **and method only** |
//! | `GET /api/data` | `200 data` | [`Fixture::by_api_key`]: one budget per `x-api-key` value |
//! | `GET /api/me` | `200 me` | [`Fixture::by_user`]: one budget per [`RateLimitKey`], which an app middleware in front of the limiter sets from the `x-user` header |
//! | `GET /` | `200 home` | nothing |
//! | anything else | the framework's 404 (or 405 for `GET /api/chat`) | nothing |
//!
//! The idiomatic way in each framework: axum's `MethodRouter::route_layer`,
//! actix-web's `Route::wrap`, and in plain tower the limiter on the
//! branch of the app's own routing. [`run`] checks that other methods,
//! 405s and 404s are never counted, that each key has its own budget,
//! and that headers and the 429 body are the same whatever the key.

use std::future::Future;
use std::net::SocketAddr;

use watchpost::ratelimit::{ExtensionKey, HeaderKey, RateLimitKey, RateLimiter};
use watchpost::ManualClock;

use crate::{Harness, TestRequest, TestResponse};

/// What every adapter's app is built from.
#[derive(Debug)]
pub struct Fixture {
    /// `2/min` per client, for `POST /api/chat` only.
    pub chat: RateLimiter,
    /// `2/min` per `x-api-key` value (by client IP without one), for
    /// `GET /api/data`.
    pub by_api_key: RateLimiter,
    /// `2/min` per [`RateLimitKey`] in the request's extensions (by client
    /// IP without one), for `GET /api/me`.
    pub by_user: RateLimiter,
}

/// The header the app's middleware reads the user from, for `/api/me`.
pub const USER_HEADER: &str = "x-user";

/// What the app's authentication middleware puts in the extensions for
/// `GET /api/me`: the `x-user` header's value, if any.
pub fn user_key(value: Option<&[u8]>) -> Option<RateLimitKey> {
    value.map(|v| RateLimitKey::new(String::from_utf8_lossy(v).into_owned()))
}

/// Builds the fixture (a manual clock: nothing refills during the run).
pub fn fixture() -> Fixture {
    let clock = ManualClock::new().clock();
    let quota = || "2/min".parse().expect("valid quota");
    Fixture {
        chat: RateLimiter::per_ip(quota()).clock(clock.clone()),
        by_api_key: RateLimiter::per_ip(quota())
            .key(HeaderKey::new("x-api-key"))
            .clock(clock.clone()),
        by_user: RateLimiter::per_ip(quota()).key(ExtensionKey).clock(clock),
    }
}

const PEER: &str = "203.0.113.20:40000";
const POLICY: &str = r#""default";q=2;w=60"#;
const TEXT_429: &str = "Too many requests: retry in 30 seconds.\n";

fn request(method: &'static str, uri: &str, headers: &[(&'static str, &str)]) -> TestRequest {
    TestRequest {
        method,
        uri: uri.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| (*n, v.as_bytes().to_vec()))
            .collect(),
        peer: Some(PEER.parse::<SocketAddr>().expect("valid test address")),
    }
}

async fn send<H: Harness>(h: &H, req: TestRequest) -> TestResponse {
    h.call(req).await
}

fn ctx(what: &str, got: &TestResponse) -> String {
    format!(
        "{what} -> {} {:?} {}",
        got.status,
        got.headers,
        String::from_utf8_lossy(&got.body)
    )
}

fn uncounted(what: &str, got: &TestResponse) {
    for name in ["ratelimit", "ratelimit-policy", "retry-after"] {
        assert_eq!(got.header(name), None, "{name} on {}", ctx(what, got));
    }
}

fn allowed(what: &str, got: &TestResponse, body: &str, remaining: u32) {
    assert_eq!(got.status, 200, "{}", ctx(what, got));
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        body,
        "{}",
        ctx(what, got)
    );
    let t = 60 - 30 * remaining;
    assert_eq!(
        got.header("ratelimit"),
        Some(format!(r#""default";r={remaining};t={t}"#).as_str()),
        "{}",
        ctx(what, got)
    );
    assert_eq!(
        got.header("ratelimit-policy"),
        Some(POLICY),
        "{}",
        ctx(what, got)
    );
}

fn rejected(what: &str, got: &TestResponse) {
    assert_eq!(got.status, 429, "{}", ctx(what, got));
    assert_eq!(got.header("retry-after"), Some("30"), "{}", ctx(what, got));
    assert_eq!(
        got.header("ratelimit-policy"),
        Some(POLICY),
        "{}",
        ctx(what, got)
    );
    assert_eq!(
        got.header("ratelimit"),
        Some(r#""default";r=0;t=60"#),
        "{}",
        ctx(what, got)
    );
    assert_eq!(
        got.header("x-ratelimit-limit"),
        Some("2"),
        "{}",
        ctx(what, got)
    );
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        TEXT_429,
        "{}",
        ctx(what, got)
    );
}

/// Runs the suite against the adapter `make` builds from a fresh
/// [`fixture`].
///
/// # Panics
///
/// On the first difference from the expected answers.
pub async fn run<F, Fut, H>(make: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = H>,
    H: Harness,
{
    let h = make(fixture()).await;

    // Other methods on the limited route, and paths next to it, are never
    // counted: the framework's 405 and 404 come from outside the limiter.
    for _ in 0..5 {
        let got = send(&h, request("GET", "/api/chat", &[])).await;
        assert_eq!(got.status, 405, "{}", ctx("GET /api/chat", &got));
        uncounted("GET /api/chat", &got);
        let got = send(&h, request("POST", "/api/chat/x", &[])).await;
        assert_eq!(got.status, 404, "{}", ctx("POST /api/chat/x", &got));
        uncounted("POST /api/chat/x", &got);
    }
    let got = send(&h, request("GET", "/", &[])).await;
    assert_eq!(got.status, 200, "{}", ctx("GET /", &got));
    uncounted("GET /", &got);

    // The route and method: its whole budget is still there.
    let got = send(&h, request("POST", "/api/chat", &[])).await;
    allowed("POST /api/chat", &got, "chat", 1);
    let got = send(&h, request("POST", "/api/chat", &[])).await;
    allowed("POST /api/chat", &got, "chat", 0);
    rejected(
        "POST /api/chat",
        &send(&h, request("POST", "/api/chat", &[])).await,
    );
    let got = send(&h, request("GET", "/api/chat", &[])).await;
    assert_eq!(
        got.status,
        405,
        "still not counted: {}",
        ctx("GET /api/chat", &got)
    );

    // One budget per API key, whatever the client address.
    let key = |k: &'static str| [("x-api-key", k)];
    for remaining in [1, 0] {
        let got = send(&h, request("GET", "/api/data", &key("sk-alice"))).await;
        allowed("GET /api/data (alice)", &got, "data", remaining);
    }
    rejected(
        "GET /api/data (alice)",
        &send(&h, request("GET", "/api/data", &key("sk-alice"))).await,
    );
    let got = send(&h, request("GET", "/api/data", &key("sk-bob"))).await;
    allowed("GET /api/data (bob)", &got, "data", 1);
    // No key: counted by the client address, a budget of its own.
    let got = send(&h, request("GET", "/api/data", &[])).await;
    allowed("GET /api/data (no key)", &got, "data", 1);

    // One budget per user, from the extension the app's middleware sets.
    let user = |u: &'static str| [(USER_HEADER, u)];
    for remaining in [1, 0] {
        let got = send(&h, request("GET", "/api/me", &user("alice"))).await;
        allowed("GET /api/me (alice)", &got, "me", remaining);
    }
    rejected(
        "GET /api/me (alice)",
        &send(&h, request("GET", "/api/me", &user("alice"))).await,
    );
    let got = send(&h, request("GET", "/api/me", &user("bob"))).await;
    allowed("GET /api/me (bob)", &got, "me", 1);
    let got = send(&h, request("GET", "/api/me", &[])).await;
    allowed("GET /api/me (anonymous)", &got, "me", 1);
}
