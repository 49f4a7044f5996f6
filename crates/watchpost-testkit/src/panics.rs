//! The handler-panic conformance suite.
//!
//! Every adapter mounts the same app under its catch-panic layer, given
//! [`Fixture::alerter`]:
//!
//! | route | handler |
//! |---|---|
//! | `GET /ok` | answers `200 ok` |
//! | `GET /panic/{id}` | [`str_panic`]: panics with a `&'static str` ([`STR_MESSAGE`]) |
//! | `GET /panic-string/{id}` | [`string_panic`]`(id)`: panics with a formatted `String` ([`string_message`]) |
//! | `GET /panic-any` | [`other_panic`]: `std::panic::panic_any(42u32)` |
//!
//! The handlers live here, so that a panic's location is the same whatever
//! the adapter. [`run`] then expects, everywhere:
//!
//! - the client gets `500`, `content-type: text/plain; charset=utf-8` and
//!   the body [`PANIC_BODY`], nothing else: no panic message, no header of
//!   the adapter's own;
//! - serving goes on: `/ok` answers 200 after every panic;
//! - one critical alert per panic, whatever the number of repeats
//!   (dedupe), with the same title, detail, labels, key and structured
//!   [`PanicReport`](watchpost::panic::PanicReport) as every other adapter:
//!   first sent by the layer itself (no panic hook installed: no location),
//!   then by watchpost's panic hook, which the suite installs for the rest
//!   of the process (the location of the panic in this file, alert keyed by
//!   it, the layer sending nothing more).
//!
//! Alerts name the thread that ran the handler: the harness must run
//! handlers on the calling thread, as `oneshot` and actix's
//! `test::call_service` do.

use std::future::Future;
use std::panic::Location;
use std::sync::OnceLock;
use std::time::Duration;

use watchpost::alert::{
    fingerprint, Alerter, MemorySink, Notification, NotificationKind, Severity,
};
use watchpost::monitor::ManualClock;
use watchpost::panic::{PanicHook, PANIC_BODY, PANIC_CONTENT_TYPE};

use crate::{Harness, TestRequest, TestResponse};

/// The message of [`str_panic`].
pub const STR_MESSAGE: &str = "testkit: order total went negative";

/// The message of [`string_panic`] for `id`.
pub fn string_message(id: &str) -> String {
    format!("testkit: no stock for order {id}")
}

/// `GET /panic/{id}`: panics with a `&'static str` payload, after one
/// suspension (so the panic happens in a later poll than the first).
pub async fn str_panic() -> String {
    tokio::task::yield_now().await;
    raise(Kind::Str)
}

/// `GET /panic-string/{id}`: panics with a `String` payload.
pub async fn string_panic(id: String) -> String {
    tokio::task::yield_now().await;
    raise(Kind::String(id))
}

/// `GET /panic-any`: panics with a payload that is not a string (`42u32`).
pub async fn other_panic() -> String {
    tokio::task::yield_now().await;
    raise(Kind::Other)
}

enum Kind {
    Str,
    String(String),
    Other,
}

/// Where each kind panicked (recorded at the panic), indexed by kind.
static SITES: [OnceLock<String>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];

impl Kind {
    fn index(&self) -> usize {
        match self {
            Kind::Str => 0,
            Kind::String(_) => 1,
            Kind::Other => 2,
        }
    }
}

/// Panics as `kind` says. `#[track_caller]`: the panic's location is the
/// caller's line in this file, one line per kind, as any panic hook sees
/// it; it is recorded for the expectations.
#[track_caller]
fn raise(kind: Kind) -> ! {
    let here = Location::caller();
    let file = crate_relative(here.file());
    let _ = SITES[kind.index()].set(format!("{file}:{}:{}", here.line(), here.column()));
    match kind {
        // A literal, so the payload is a `&'static str` (equal to STR_MESSAGE).
        Kind::Str => panic!("testkit: order total went negative"),
        Kind::String(id) => panic!("{}", string_message(&id)),
        Kind::Other => std::panic::panic_any(42_u32),
    }
}

/// Where `kind` panicked, once it has.
fn site(kind: &Kind) -> String {
    let site = SITES[kind.index()]
        .get()
        .cloned()
        .expect("the handler panicked before its alert is checked");
    assert!(
        site.starts_with(&format!("{}:", crate_relative(file!()))),
        "the panic happened in the testkit, whatever the adapter: {site}"
    );
    site
}

/// A source path as alerts show it, relative to its crate:
/// `crates/watchpost-testkit/src/panics.rs` is `src/panics.rs`.
fn crate_relative(file: &str) -> &str {
    match file.rfind("/src/") {
        Some(i) => &file[i + 1..],
        None => file,
    }
}

/// What the adapter's app is given.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// The alerter to give the catch-panic layer (the `.alerter(..)` of
    /// `CatchPanicLayer` / `CatchPanic`).
    pub alerter: Alerter,
}

/// An alerter on a memory sink and a clock that stands still (nothing
/// leaves the dedupe window), with a fixed service and host so that a
/// message's text is the same on every machine.
fn alerter() -> (Alerter, MemorySink, ManualClock) {
    let manual = ManualClock::new();
    let sink = MemorySink::new();
    let alerter = Alerter::builder()
        .service("conformance")
        .host("test-host")
        .sink(sink.clone())
        .clock(manual.clock())
        .build()
        .expect("valid alerter configuration");
    (alerter, sink, manual)
}

/// The alerter behind watchpost's panic hook, installed on first use for
/// the rest of the process (a panic hook is process-wide).
fn hooked() -> &'static (Alerter, MemorySink, ManualClock) {
    static HOOKED: OnceLock<(Alerter, MemorySink, ManualClock)> = OnceLock::new();
    HOOKED.get_or_init(|| {
        let (alerter, sink, manual) = alerter();
        // No backtrace: its frames are the adapter's own stack, which
        // differ by design.
        PanicHook::new(&alerter)
            .backtrace(false)
            .try_install()
            .expect(
                "the panics suite installs watchpost's panic hook: nothing else in \
                 this test binary may",
            );
        (alerter, sink, manual)
    })
}

/// Who reports the panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reporter {
    /// The catch-panic layer, with its alerter: no hook installed.
    Layer,
    /// watchpost's panic hook.
    Hook,
}

/// The requests each phase sends: every panic three times (one alert
/// each), `/ok` after every one.
fn requests() -> Vec<(&'static str, Option<Kind>)> {
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(("/panic/7", Some(Kind::Str)));
        requests.push(("/ok", None));
        requests.push(("/panic-string/7", Some(Kind::String("7".to_owned()))));
        requests.push(("/ok", None));
        requests.push(("/panic-any", Some(Kind::Other)));
        requests.push(("/ok", None));
    }
    requests
}

/// Runs the suite against the adapters `make` builds: first with the
/// layer alerting (no hook), then with watchpost's panic hook installed,
/// which it stays for the rest of the process.
///
/// # Panics
///
/// On the first difference from the expected answers and alerts, or if
/// watchpost's panic hook was installed by something else in this test
/// binary (run the suite once per binary, where nothing else installs it).
pub async fn run<F, Fut, H>(make: F)
where
    F: Fn(Fixture) -> Fut,
    Fut: Future<Output = H>,
    H: Harness,
{
    assert!(
        !watchpost::panic::is_installed(),
        "the panics suite starts without watchpost's panic hook: nothing else in this \
         test binary may install it"
    );
    let (alerter, sink, _manual) = alerter();
    let harness = make(Fixture {
        alerter: alerter.clone(),
    })
    .await;
    phase(&harness, Reporter::Layer, &alerter, &sink).await;

    let (alerter, sink, _) = hooked();
    let harness = make(Fixture {
        alerter: alerter.clone(),
    })
    .await;
    phase(&harness, Reporter::Hook, alerter, sink).await;
}

async fn phase<H: Harness>(harness: &H, reporter: Reporter, alerter: &Alerter, sink: &MemorySink) {
    for (i, (uri, kind)) in requests().into_iter().enumerate() {
        let got = harness
            .call(TestRequest {
                method: "GET",
                uri: uri.to_owned(),
                headers: Vec::new(),
                peer: None,
            })
            .await;
        let ctx = format!("{reporter:?} step {i}: GET {uri} -> {got:?}");
        match kind {
            None => {
                assert_eq!(got.status, 200, "serving goes on: {ctx}");
                assert_eq!(got.body, b"ok", "{ctx}");
            }
            Some(kind) => check_answer(&got, &kind, &ctx),
        }
    }

    assert!(
        alerter.flush(Duration::from_secs(10)),
        "alerts delivered in time"
    );
    // With the hook, the sink is the process's: keep this suite's panics.
    let ours = |n: &Notification| {
        n.alert().panic_report().is_some_and(|r| {
            [STR_MESSAGE, &string_message("7"), "Box<dyn Any>"].contains(&r.message())
        })
    };
    let sent: Vec<Notification> = sink.notifications().into_iter().filter(ours).collect();
    let thread = std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned();
    let expected = [
        ("/panic/7", Kind::Str),
        ("/panic-string/7", Kind::String("7".to_owned())),
        ("/panic-any", Kind::Other),
    ];
    let titles: Vec<&str> = sent.iter().map(|n| n.alert().title()).collect();
    assert_eq!(
        sent.len(),
        expected.len(),
        "{reporter:?}: one alert per panic, repeats deduplicated: {titles:?}"
    );
    for (n, (path, kind)) in sent.iter().zip(&expected) {
        check_alert(n, reporter, path, kind, &thread);
    }
}

/// The 500 every adapter answers: nothing about the panic.
fn check_answer(got: &TestResponse, kind: &Kind, ctx: &str) {
    assert_eq!(got.status, 500, "status: {ctx}");
    // `content-length` is the transport's (axum's router sets it, servers
    // always do): allowed, if right.
    if let Some(length) = got.header("content-length") {
        assert_eq!(length, got.body.len().to_string(), "content-length: {ctx}");
    }
    let headers: Vec<(&str, &str)> = got
        .headers
        .iter()
        .filter(|(n, _)| n != "content-length")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [("content-type", PANIC_CONTENT_TYPE)],
        "headers: {ctx}"
    );
    assert_eq!(got.body, PANIC_BODY.as_bytes(), "body: {ctx}");
    let body = String::from_utf8_lossy(&got.body);
    assert!(
        !body.contains(&message(kind)) && !body.contains("testkit"),
        "the panic message never reaches the client: {ctx}"
    );
}

fn message(kind: &Kind) -> String {
    match kind {
        Kind::Str => STR_MESSAGE.to_owned(),
        Kind::String(id) => string_message(id),
        Kind::Other => "Box<dyn Any>".to_owned(),
    }
}

fn check_alert(n: &Notification, reporter: Reporter, path: &str, kind: &Kind, thread: &str) {
    let message = message(kind);
    let title = format!("panic: {message}");
    let request = format!("GET {path}");
    let caught = "(caught: the client got a 500, serving goes on)";
    let alert = n.alert();
    let ctx = format!("{reporter:?}, GET {path}:\n{}", n.to_plain_text());
    assert_eq!(n.kind(), NotificationKind::Alert, "{ctx}");
    assert_eq!(n.similar(), 0, "{ctx}");
    assert_eq!(alert.title(), title, "{ctx}");
    let report = alert.panic_report().expect("the PanicReport is attached");
    assert_eq!(report.message(), message, "{ctx}");
    assert_eq!(report.thread(), thread, "{ctx}");
    assert!(report.frames().is_empty(), "no backtrace captured: {ctx}");
    let labels: Vec<(&str, &str)> = alert.labels().collect();
    let (key, detail, location) = match reporter {
        Reporter::Layer => {
            assert_eq!(
                labels,
                [("thread", thread), ("request", request.as_str())],
                "{ctx}"
            );
            let detail = format!(
                "thread '{thread}'\nrequest {request} {caught}\n\nInstall watchpost's panic \
                 hook (watchpost::panic::install) for the location and a backtrace."
            );
            (fingerprint(&title), detail, None)
        }
        Reporter::Hook => {
            let site = site(kind);
            assert_eq!(
                labels,
                [
                    ("thread", thread),
                    ("location", site.as_str()),
                    ("request", request.as_str())
                ],
                "{ctx}"
            );
            let detail = format!("at {site}\nthread '{thread}'\nrequest {request} {caught}");
            (format!("panic:{site}"), detail, Some(site))
        }
    };
    assert_eq!(n.key(), key, "{ctx}");
    assert_eq!(alert.detail_text(), Some(detail.as_str()), "{ctx}");
    assert_eq!(report.location(), location.as_deref(), "{ctx}");
    assert_eq!(alert.severity(), Severity::Critical, "{ctx}");
    assert_eq!(
        n.context_line(),
        "critical · conformance · test-host",
        "{ctx}"
    );
}
