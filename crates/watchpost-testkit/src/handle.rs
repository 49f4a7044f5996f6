//! The `Watchpost` handle through an adapter: the layers and probes it
//! hands out, mounted as each framework's docs say, give one message for
//! one bug.
//!
//! Every adapter mounts, from [`Fixture::watchpost`] and its own
//! extension (`layers()`, `routes()`/`probes()`):
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | `200 ok` |
//! | `GET /panic` | [`crate::panics::str_panic`]: a panic, answered 500 |
//! | `GET /error` | a plain `500` |
//!
//! and the handle's probes, everything inside its layers.
//!
//! [`run`] sends 20 identical panics and lets three minutes of virtual
//! time pass: exactly one message (the panic), no 5xx-rate incident for
//! the same requests. Then a burst of real 500s still fires the 5xx
//! incident, and the probes are never counted.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use watchpost::alert::{MemorySink, NotificationKind};
use watchpost::checks::fn_check;
use watchpost::{ManualClock, Watchpost};

use crate::{Harness, TestRequest};

/// What every adapter's app is built from.
#[derive(Debug)]
pub struct Fixture {
    /// The handle: a manual clock, an in-memory sink, one passing
    /// readiness check, an app-wide rate limit of 1000/min.
    pub watchpost: Watchpost,
}

struct Rig {
    manual: ManualClock,
    sink: MemorySink,
    watchpost: Watchpost,
}

fn fixture() -> (Fixture, Rig) {
    let manual = ManualClock::new();
    let sink = MemorySink::new();
    let watchpost = Watchpost::builder()
        .service("conformance")
        .clock(manual.clock())
        .sink(sink.clone())
        .readiness("db", fn_check(|| async { true }))
        .rate_limit("1000/min".parse().expect("valid quota"))
        .panic_hook(false)
        .build()
        .expect("valid configuration");
    (
        Fixture {
            watchpost: watchpost.clone(),
        },
        Rig {
            manual,
            sink,
            watchpost,
        },
    )
}

fn get(uri: &str) -> TestRequest {
    TestRequest {
        method: "GET",
        uri: uri.to_owned(),
        headers: Vec::new(),
        peer: Some(
            "203.0.113.30:40000"
                .parse::<SocketAddr>()
                .expect("valid address"),
        ),
    }
}

/// Runs the suite against the adapter `make` builds.
///
/// # Panics
///
/// On the first difference from the expected answers or messages.
pub async fn run<F, Fut, H>(make: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = H>,
    H: Harness,
{
    let (fixture, rig) = fixture();
    let harness = make(fixture).await;
    let monitor = rig.watchpost.monitor().clone();

    let got = harness.call(get("/")).await;
    assert_eq!(got.status, 200);
    assert!(
        got.header("ratelimit").is_some(),
        "the app-wide limit: {got:?}"
    );
    for _ in 0..20 {
        let got = harness.call(get("/panic")).await;
        assert_eq!(got.status, 500, "{got:?}");
    }
    for path in ["/readyz", "/livez", "/healthz", "/readyz/db"] {
        let got = harness.call(get(path)).await;
        assert_eq!(got.status, 200, "{path}: {got:?}");
        assert!(
            got.header("ratelimit").is_none(),
            "probes are not limited: {got:?}"
        );
    }
    let s = monitor.snapshot();
    assert_eq!(
        (s.requests, s.errors),
        (21, 0),
        "panics are requests, not 5xx: {s:?}"
    );

    // Three minutes pass: one bug, one message.
    rig.manual.advance(Duration::from_secs(180));
    assert!(rig.watchpost.flush(Duration::from_secs(10)));
    let sent = rig.sink.notifications();
    let titles: Vec<&str> = sent.iter().map(|n| n.alert().title()).collect();
    let panic = format!("panic: {}", crate::panics::STR_MESSAGE);
    assert_eq!(titles, [panic.as_str()], "{sent:#?}");
    assert!(!rig.watchpost.alerter().is_firing(monitor.error_rate_key()));

    // Real 500s still fire the 5xx incident.
    for _ in 0..30 {
        assert_eq!(harness.call(get("/error")).await.status, 500);
    }
    rig.manual.advance(Duration::from_secs(1));
    assert!(rig.watchpost.flush(Duration::from_secs(10)));
    let sent = rig.sink.notifications();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[1].key(), monitor.error_rate_key());
    assert_eq!(sent[1].kind(), NotificationKind::Firing);
}
