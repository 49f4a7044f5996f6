//! The HTTP-monitor conformance suite.
//!
//! Every adapter mounts the same app under its HTTP monitor, given
//! [`Fixture::monitor`], with its catch-panic layer (no alerter) inside
//! the monitor:
//!
//! | route | answer |
//! |---|---|
//! | `GET /users/{id}` | `200 user` |
//! | `POST /users/{id}` | a plain `500` response |
//! | `GET /reports/{id}` | `500` the framework's idiomatic error way: axum, a handler returning `Err(E)` with `E: IntoResponse`; actix-web, a handler returning `Err(actix_web::Error)`; plain tower, the service's `Err`, turned into a 500 outside the monitor |
//! | `GET /crash/{id}` | [`crash`]: panics; the catch-panic layer answers 500, counted as a request but not in the 5xx rate (the panic has its own alert) |
//! | any other path | `404`, from inside the monitor (not counted: no route matched) |
//!
//! and the health probes of [`Fixture::health`] (readiness failing: 503)
//! *outside* the monitor. Routes are named by their pattern
//! (`GET /users/{id}`): axum's `MatchedPath`, actix's match pattern, and
//! in plain tower whatever `RoutePattern` the stack's router provides.
//!
//! [`run`] drives a burst on a [`ManualClock`], then expects the same
//! [`WindowSnapshot`](watchpost::monitor::WindowSnapshot) everywhere (the
//! 200s and the panic counted as requests, the two 5xx routes counted
//! under their patterns, unknown paths' 404s and the probes not at all),
//! one `http:5xx` incident
//! with the same text, and its resolution after a calm window.

use std::future::Future;
use std::time::Duration;

use watchpost::alert::{Alerter, MemorySink, Notification, NotificationKind};
use watchpost::checks::fn_check;
use watchpost::health::HealthChecks;
use watchpost::monitor::{HttpMonitor, ManualClock};

use crate::{Harness, TestRequest, TestResponse};

/// The message of [`crash`]'s panic.
pub const CRASH_MESSAGE: &str = "testkit monitor: crash route";

/// The text of `GET /reports/{id}`'s error, wherever the framework puts it.
pub const REPORT_ERROR: &str = "report store unreachable";

/// `GET /crash/{id}`: panics with [`CRASH_MESSAGE`], after one suspension.
pub async fn crash() -> String {
    tokio::task::yield_now().await;
    panic!("testkit monitor: crash route")
}

/// What every adapter's app is built from.
#[derive(Debug)]
pub struct Fixture {
    /// The monitor to mount (default rules: 5% over 20 requests in 60 s),
    /// on a [`ManualClock`].
    pub monitor: HttpMonitor,
    /// The probes to mount outside the monitor: readiness (`db`) fails, so
    /// `/readyz` answers 503.
    pub health: HealthChecks,
}

/// The pieces the suite keeps for itself.
struct Rig {
    manual: ManualClock,
    alerter: Alerter,
    sink: MemorySink,
}

fn fixture() -> (Fixture, Rig) {
    let manual = ManualClock::new();
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .service("conformance")
        .host("test-host")
        .sink(sink.clone())
        .clock(manual.clock())
        .build()
        .expect("valid alerter configuration");
    let monitor = HttpMonitor::builder(&alerter)
        .clock(manual.clock())
        .build()
        .expect("valid monitor configuration");
    let health = HealthChecks::builder()
        .readiness("db", fn_check(|| async { false }))
        .build()
        .expect("valid health configuration");
    (
        Fixture { monitor, health },
        Rig {
            manual,
            alerter,
            sink,
        },
    )
}

fn get(uri: impl Into<String>) -> TestRequest {
    request("GET", uri)
}

fn request(method: &'static str, uri: impl Into<String>) -> TestRequest {
    TestRequest {
        method,
        uri: uri.into(),
        headers: Vec::new(),
        peer: None,
    }
}

async fn send<H: Harness>(harness: &H, req: TestRequest, status: u16) -> TestResponse {
    let ctx = format!("{} {}", req.method, req.uri);
    let got = harness.call(req).await;
    assert_eq!(
        got.status,
        status,
        "{ctx} -> {} {:?} {}",
        got.status,
        got.headers,
        String::from_utf8_lossy(&got.body)
    );
    got
}

/// The burst: 26 counted requests, 5 of them 5xx on two routes, a panic
/// (a request, not a 5xx), and unknown paths and probes that must not be
/// counted.
async fn burst<H: Harness>(harness: &H) {
    for id in 1..=20 {
        let got = send(harness, get(format!("/users/{id}")), 200).await;
        assert_eq!(got.body, b"user", "GET /users/{id}");
    }
    for id in 1..=3 {
        send(harness, request("POST", format!("/users/{id}")), 500).await;
    }
    for id in 1..=2 {
        send(harness, get(format!("/reports/{id}")), 500).await;
    }
    send(harness, get("/crash/1"), 500).await;
    send(harness, get("/nope"), 404).await;
    send(harness, get("/users/1/friends"), 404).await;
    for _ in 0..3 {
        send(harness, get("/readyz"), 503).await;
    }
    send(harness, get("/readyz/db"), 503).await;
    send(harness, get("/healthz"), 503).await;
    send(harness, get("/livez"), 200).await;
}

fn routes(top: &[(&str, u64)]) -> Vec<(String, u64)> {
    top.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect()
}

/// What the sink got, once everything queued is delivered.
fn delivered(rig: &Rig) -> Vec<Notification> {
    assert!(
        rig.alerter.flush(Duration::from_secs(10)),
        "alerts delivered in time"
    );
    rig.sink.notifications()
}

/// The incident's text, as every adapter must produce it.
pub const FIRING_TEXT: &str = "\
🔴 FIRING: HTTP 5xx rate 19% (http)
error · conformance · test-host
5 of 26 requests answered 5xx in the last 1m (fires at 5%, resolves under 2.5% for 1m).
Top routes: POST /users/{id} (3), GET /reports/{id} (2)
monitor=http error_rate=0.1923 requests=26 errors=5";

/// Runs the suite against the adapter `make` builds from a fresh fixture.
///
/// # Panics
///
/// On the first difference from the expected answers, figures or alerts.
pub async fn run<F, Fut, H>(make: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = H>,
    H: Harness,
{
    let (fixture, rig) = fixture();
    let monitor = fixture.monitor.clone();
    let harness = make(fixture).await;

    burst(&harness).await;
    let s = monitor.snapshot();
    assert_eq!(
        (s.requests, s.errors),
        (26, 5),
        "the 200s and the panic are requests, the panic is not a 5xx, \
         unknown paths and the probes are nothing: {s:?}"
    );
    assert_eq!(
        s.top_routes,
        routes(&[("POST /users/{id}", 3), ("GET /reports/{id}", 2)]),
        "every 5xx under its route pattern: {s:?}"
    );
    assert_eq!(s.window, Duration::from_secs(60));
    assert!(
        delivered(&rig).is_empty(),
        "rules are evaluated on the clock's tick, not on the request path"
    );

    // The first tick fires the incident.
    rig.manual.advance(Duration::from_secs(1));
    let sent = delivered(&rig);
    let texts: Vec<String> = sent.iter().map(Notification::to_plain_text).collect();
    assert_eq!(texts, [FIRING_TEXT], "one incident");
    assert_eq!(sent[0].kind(), NotificationKind::Firing);
    assert_eq!(sent[0].key(), monitor.error_rate_key());
    assert_eq!(sent[0].key(), "http:5xx");

    // More errors while it fires: still one incident.
    for id in 4..=8 {
        send(&harness, request("POST", format!("/users/{id}")), 500).await;
    }
    rig.manual.advance(Duration::from_secs(5));
    assert_eq!(delivered(&rig).len(), 1, "one message per incident");

    // The errors leave the window; calm traffic comes back.
    rig.manual.advance(Duration::from_secs(60));
    for id in 1..=20 {
        send(&harness, get(format!("/users/{id}")), 200).await;
    }
    let s = monitor.snapshot();
    assert_eq!((s.requests, s.errors), (20, 0), "{s:?}");
    assert!(s.top_routes.is_empty(), "{s:?}");

    // Resolved after a full window of calm (calm since the errors left
    // it, 60 s in), not before.
    rig.manual.advance(Duration::from_secs(50));
    assert_eq!(
        delivered(&rig).len(),
        1,
        "still firing before a calm window"
    );
    assert!(rig.alerter.is_firing(monitor.error_rate_key()));
    rig.manual.advance(Duration::from_secs(10));
    let sent = delivered(&rig);
    let kinds: Vec<(&str, bool)> = sent
        .iter()
        .map(|n| {
            (
                n.key(),
                matches!(n.kind(), NotificationKind::Resolved { .. }),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("http:5xx", false), ("http:5xx", true)],
        "firing, then resolved"
    );
    assert_eq!(
        sent[1].headline(),
        "✅ RESOLVED: HTTP 5xx rate 19% (http)",
        "{}",
        sent[1].to_plain_text()
    );
    assert!(!rig.alerter.is_firing(monitor.error_rate_key()));
}
