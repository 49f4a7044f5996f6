use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ManualClock;

fn quota(s: &str) -> Quota {
    s.parse().unwrap()
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

/// In-memory checks, decided at once.
trait CheckNow {
    fn check_request_now(&self, req: &RateLimitRequest<'_>) -> Outcome;
}

impl CheckNow for RateLimiter {
    fn check_request_now(&self, req: &RateLimitRequest<'_>) -> Outcome {
        self.check_request(req)
            .ready()
            .expect("in memory: decided at once")
    }
}

#[test]
fn gcra_allows_the_burst_then_one_per_interval() {
    let clock = ManualClock::new();
    let limiter = KeyedRateLimiter::new(quota("5/min")).clock(clock.clock());
    let remaining: Vec<u32> = (0..5).map(|_| limiter.check(&"k").remaining).collect();
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    let denied = limiter.check(&"k");
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(denied.reset_after, Duration::from_secs(60));
    clock.advance(Duration::from_secs(11));
    assert!(!limiter.check(&"k").allowed);
    clock.advance(Duration::from_secs(1));
    let allowed = limiter.check(&"k");
    assert_eq!((allowed.allowed, allowed.remaining), (true, 0));
    assert!(!limiter.check(&"k").allowed);
}

#[test]
fn many_threads_on_one_key_never_exceed_the_quota() {
    let limiter = KeyedRateLimiter::new(quota("100/hour")).clock(ManualClock::new().clock());
    let allowed = Arc::new(AtomicU32::new(0));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (limiter, allowed) = (limiter.clone(), allowed.clone());
            s.spawn(move || {
                for _ in 0..5_000 {
                    if limiter.check(&"hot").allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(allowed.load(Ordering::Relaxed), 100);
}

#[test]
fn a_million_distinct_keys_stay_under_the_cap() {
    let cap = 20_000;
    let limiter = KeyedRateLimiter::new(quota("10/min")).max_keys(cap);
    for n in 0..1_000_000 {
        assert!(limiter.check(&ip(n)).allowed);
    }
    let len = limiter.len();
    assert!(len <= cap + 64, "{len} keys tracked, cap {cap}");
    assert!(
        len >= cap / 2,
        "eviction should keep the table mostly full, got {len}"
    );
}

#[test]
fn eviction_never_resets_a_client_being_limited() {
    let clock = ManualClock::new();
    let limiter = KeyedRateLimiter::new(quota("5/min"))
        .max_keys(640)
        .clock(clock.clock());
    let abuser = ip(u32::MAX);
    while limiter.check(&abuser).allowed {}
    // A flood of new keys, each with allowance left, fills every shard many
    // times over.
    for n in 0..200_000 {
        limiter.check(&ip(n));
        if n % 10_000 == 0 {
            clock.advance(Duration::from_millis(100));
        }
    }
    assert!(limiter.len() <= 640 + 64);
    let d = limiter.check(&abuser);
    assert!(
        !d.allowed,
        "the abuser was evicted and got a fresh burst: {d:?}"
    );
}

#[test]
fn refilled_keys_are_dropped_and_nothing_else() {
    let clock = ManualClock::new();
    let limiter = KeyedRateLimiter::new(quota("2/s")).clock(clock.clock());
    for n in 0..100 {
        limiter.check(&n);
    }
    limiter.check(&7); // key 7 used twice: empty bucket
                       // governor keeps a key one interval (500 ms) past its refill, to be safe.
    clock.advance(Duration::from_millis(1100));
    limiter.retain_recent();
    assert_eq!(limiter.len(), 1, "only the key still refilling stays");
    clock.advance(Duration::from_secs(1));
    limiter.retain_recent();
    limiter.shrink_to_fit();
    assert!(limiter.is_empty());
}

fn request<'a>(
    method: &'a str,
    path: &'a str,
    peer: &str,
    headers: &'a http::HeaderMap,
) -> RateLimitRequest<'a> {
    RateLimitRequest::new(method, path, Some(peer.parse().unwrap()), headers)
}

#[test]
fn routes_have_separate_budgets_and_exempt_paths_are_free() {
    let limiter = RateLimiter::per_ip(quota("3/min"))
        .route("/api/chat", quota("1/min"))
        .exempt("/healthz")
        .clock(ManualClock::new().clock());
    let h = http::HeaderMap::new();
    let peer = "198.51.100.1";
    assert!(!limiter
        .check_request_now(&request("POST", "/api/chat", peer, &h))
        .is_rejected());
    assert!(limiter
        .check_request_now(&request("POST", "/api/chat/stream", peer, &h))
        .is_rejected());
    for _ in 0..3 {
        assert!(!limiter
            .check_request_now(&request("GET", "/api/chatty", peer, &h))
            .is_rejected());
    }
    assert!(limiter
        .check_request_now(&request("GET", "/", peer, &h))
        .is_rejected());
    for _ in 0..100 {
        let o = limiter.check_request_now(&request("GET", "/healthz", peer, &h));
        assert!(o.decision().is_none() && !o.is_rejected());
        let o = limiter.check_request_now(&request("OPTIONS", "/api/chat", peer, &h));
        assert!(o.decision().is_none(), "preflight is not counted");
    }
    let counted = RateLimiter::per_ip(quota("1/min")).count_options(true);
    counted.check_request_now(&request("OPTIONS", "/", peer, &h));
    assert!(counted
        .check_request_now(&request("OPTIONS", "/", peer, &h))
        .is_rejected());
}

fn text_headers(outcome: &Outcome) -> Vec<(&'static str, String)> {
    outcome
        .headers()
        .map(|(n, v)| (n.as_str(), String::from_utf8(v.to_vec()).unwrap()))
        .collect()
}

#[test]
fn headers_on_allowed_and_rejected_responses() {
    let limiter = RateLimiter::per_ip(quota("2/min")).clock(ManualClock::new().clock());
    let h = http::HeaderMap::new();
    let first = limiter.check_request_now(&request("GET", "/", "192.0.2.1", &h));
    assert_eq!(
        text_headers(&first),
        [
            ("ratelimit-policy", r#""default";q=2;w=60"#.to_owned()),
            ("ratelimit", r#""default";r=1;t=30"#.to_owned()),
        ]
    );
    let legacy = RateLimiter::per_ip(quota("2/min"))
        .legacy_headers(true)
        .clock(ManualClock::new().clock());
    let first = legacy.check_request_now(&request("GET", "/", "192.0.2.1", &h));
    assert_eq!(
        text_headers(&first)[2..],
        [
            ("x-ratelimit-limit", "2".to_owned()),
            ("x-ratelimit-remaining", "1".to_owned()),
            ("x-ratelimit-reset", "30".to_owned()),
        ]
    );
    limiter.check_request_now(&request("GET", "/", "192.0.2.1", &h));
    let rejected = limiter.check_request_now(&request("GET", "/", "192.0.2.1", &h));
    assert!(rejected.is_rejected());
    let headers = text_headers(&rejected);
    assert!(
        headers.contains(&("retry-after", "30".to_owned())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x-ratelimit-remaining", "0".to_owned())),
        "{headers:?}"
    );
    let (ct, body) = rejected.rejection_body(None);
    assert_eq!(
        (ct, &body[..]),
        (
            "text/plain; charset=utf-8",
            &b"Too many requests: retry in 30 seconds.\n"[..]
        )
    );
    let (ct, body) = rejected.rejection_body(Some(b"application/json"));
    assert_eq!(
        (ct, &body[..]),
        (
            "application/json",
            &br#"{"error":"too_many_requests","retry_after":30}"#[..]
        )
    );
}

#[test]
fn sub_second_waits_round_up_to_one_second() {
    let limiter = RateLimiter::per_ip(quota("10/s")).clock(ManualClock::new().clock());
    let h = http::HeaderMap::new();
    for _ in 0..10 {
        assert!(!limiter
            .check_request_now(&request("GET", "/", "192.0.2.1", &h))
            .is_rejected());
    }
    let rejected = limiter.check_request_now(&request("GET", "/", "192.0.2.1", &h));
    assert!(rejected.is_rejected());
    assert!(rejected
        .headers()
        .any(|(n, v)| n == RateLimitHeader::RetryAfter && v == "1"));
}

#[test]
fn a_missing_peer_is_not_counted() {
    let limiter = RateLimiter::per_ip(quota("1/min"));
    let h = http::HeaderMap::new();
    for _ in 0..3 {
        let o = limiter.check_request_now(&RateLimitRequest::new("GET", "/", None, &h));
        assert!(!o.is_rejected() && o.client_ip().is_none());
    }
}

#[test]
fn exempt_and_route_prefixes_match_whole_segments_only() {
    let limiter = RateLimiter::per_ip(quota("1/min"))
        .route("/api/chat", quota("1/hour"))
        .exempt("/healthz")
        .clock(ManualClock::new().clock());
    let h = http::HeaderMap::new();
    let counted = |path: &str| {
        limiter
            .check_request_now(&request("GET", path, "192.0.2.9", &h))
            .decision()
            .is_some()
    };
    // Paths that merely start with an exempt name are counted.
    assert!(counted("/healthzz"));
    assert!(counted("/healthz-admin"));
    assert!(!counted("/healthz/db"));
    // The chat quota covers its sub-paths and a trailing slash.
    let chat = |path: &str| {
        limiter
            .check_request_now(&request("GET", path, "192.0.2.10", &h))
            .is_rejected()
    };
    assert!(!chat("/api/chat"));
    assert!(chat("/api/chat/"));
    assert!(chat("/api/chat/stream"));
}

/// A store counting in memory behind a yield, recording what it was asked.
#[derive(Clone)]
struct RecordingStore {
    limiter: KeyedRateLimiter<String>,
    asked: Arc<std::sync::Mutex<Vec<(String, Quota)>>>,
}

impl RateLimitStore for RecordingStore {
    fn check(&self, key: &str, quota: Quota) -> DecisionFuture {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push((key.to_owned(), quota));
        }
        let decision = self.limiter.check(&key.to_owned());
        Box::pin(async move {
            tokio::task::yield_now().await;
            decision
        })
    }
}

#[tokio::test]
async fn a_store_decides_with_the_same_headers_and_keys_name_rule_and_client() {
    let clock = ManualClock::new();
    let store = RecordingStore {
        limiter: KeyedRateLimiter::new(quota("2/min")).clock(clock.clock()),
        asked: Arc::default(),
    };
    let memory = RateLimiter::per_ip(quota("2/min"))
        .route("/api/chat", quota("2/min"))
        .exempt("/healthz")
        .clock(clock.clock());
    let shared = memory.clone().store(store.clone());
    assert!(shared.is_shared() && !memory.is_shared());
    let h = http::HeaderMap::new();
    let headers = |o: &Outcome| o.headers().collect::<Vec<_>>();
    for (path, peer) in [
        ("/", "192.0.2.1"),
        ("/", "192.0.2.1"),
        ("/", "192.0.2.1"),
        ("/api/chat/x", "2001:db8:1:2::7"),
    ] {
        let check = shared.check_request(&request("GET", path, peer, &h));
        assert_eq!(check.client_ip(), Some(peer.parse().unwrap()));
        assert!(matches!(check, Verdict::Pending(_)));
        let from_store = check.await;
        let from_memory = memory.check_request_now(&request("GET", path, peer, &h));
        assert_eq!(from_store.decision(), from_memory.decision(), "{path}");
        assert_eq!(headers(&from_store), headers(&from_memory), "{path}");
        assert_eq!(from_store.client_ip(), from_memory.client_ip());
    }
    // Exempt, preflight and peerless requests never reach the store.
    for check in [
        shared.check_request(&request("GET", "/healthz", "192.0.2.1", &h)),
        shared.check_request(&request("OPTIONS", "/", "192.0.2.1", &h)),
        shared.check_request(&RateLimitRequest::new("GET", "/", None, &h)),
    ] {
        let outcome = check.ready().expect("not counted: decided at once");
        assert!(outcome.decision().is_none());
    }
    let asked = store.asked.lock().unwrap().clone();
    let expected: Vec<(String, Quota)> = vec![
        ("default:192.0.2.1".into(), quota("2/min")),
        ("default:192.0.2.1".into(), quota("2/min")),
        ("default:192.0.2.1".into(), quota("2/min")),
        ("/api/chat:2001:db8:1:2::".into(), quota("2/min")),
    ];
    assert_eq!(asked, expected);
    // A ready check awaits to its outcome too.
    let ready = memory.check_request(&request("GET", "/healthz", "192.0.2.1", &h));
    assert!(ready.await.decision().is_none());
}

#[test]
fn a_request_can_be_held_across_an_await_in_a_spawned_task() {
    fn is_send<T: Send>() {}
    is_send::<RateLimitRequest<'static>>();
    is_send::<Verdict>();
}
