use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::checks::fn_check;

/// A check that counts its runs, sleeps `delay`, then returns what `outcome`
/// holds at that moment.
#[derive(Clone)]
struct Scripted {
    runs: Arc<AtomicUsize>,
    outcome: Arc<Mutex<Status>>,
    delay: Duration,
}

impl Scripted {
    fn new(delay: Duration) -> Self {
        Self {
            runs: Arc::default(),
            outcome: Arc::new(Mutex::new(Status::Pass)),
            delay,
        }
    }
    fn set(&self, status: Status) {
        *self.outcome.lock().unwrap() = status;
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Check for Scripted {
    async fn check(&self) -> CheckResult {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let status = *self.outcome.lock().unwrap();
        CheckResult::pass()
            .with_status(status)
            .with_output(format!("scripted {status}"))
    }
}

#[tokio::test(start_paused = true)]
async fn thousand_concurrent_probes_run_each_check_once_per_cache_period() {
    let a = Scripted::new(Duration::from_millis(50));
    let b = Scripted::new(Duration::from_millis(80));
    let manual = crate::ManualClock::new();
    let health = HealthChecks::builder()
        .readiness("a", a.clone())
        .readiness("b", b.clone())
        .cache_for(Duration::from_secs(5))
        .clock(manual.clock())
        .build()
        .unwrap();

    let probes: Vec<_> = (0..1000)
        .map(|_| {
            let health = health.clone();
            tokio::spawn(async move { health.evaluate(Probe::Readiness).await.http_status() })
        })
        .collect();
    for p in probes {
        assert_eq!(p.await.unwrap(), 200);
    }
    assert_eq!((a.runs(), b.runs()), (1, 1));

    // Inside the period: served from cache.
    manual.advance(Duration::from_secs(4));
    health.evaluate(Probe::Health).await;
    assert_eq!((a.runs(), b.runs()), (1, 1));

    // After it: one more run each, however many callers.
    manual.advance(Duration::from_secs(2));
    let again: Vec<_> = (0..100)
        .map(|_| health.evaluate(Probe::Readiness))
        .collect();
    futures_util::future::join_all(again).await;
    assert_eq!((a.runs(), b.runs()), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn runs_of_one_check_never_overlap() {
    let running = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let check = {
        let (running, max_seen) = (running.clone(), max_seen.clone());
        fn_check(move || {
            let (running, max_seen) = (running.clone(), max_seen.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }
        })
    };
    let health = HealthChecks::builder()
        .readiness("c", check)
        .cache_for(Duration::ZERO)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let health = health.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 7)).await;
                health.evaluate(Probe::Readiness).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(max_seen.load(Ordering::SeqCst), 1);
}

/// Counts drops, to prove a timed-out check's future is gone.
struct DropCounter(Arc<AtomicUsize>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_times_out_and_is_dropped() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let hanging = {
        let dropped = dropped.clone();
        fn_check(move || {
            let guard = DropCounter(dropped.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            }
        })
    };
    let health = HealthChecks::builder()
        .register(
            CheckSpec::new("hang", hanging)
                .readiness()
                .timeout(Duration::from_millis(300)),
        )
        .readiness("ok", fn_check(|| async {}))
        .build()
        .unwrap();
    let report = health.evaluate(Probe::Readiness).await;
    assert_eq!(report.http_status(), 503);
    let hang = report.check("hang").unwrap();
    assert_eq!(hang.status(), Status::Fail);
    assert_eq!(hang.output(), Some("timed out after 300ms"));
    assert_eq!(report.check("ok").unwrap().status(), Status::Pass);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the timed-out future must be dropped"
    );
}

#[tokio::test]
async fn a_panicking_check_fails_without_taking_others_down() {
    let health = HealthChecks::builder()
        .readiness(
            "async-panic",
            fn_check(|| async {
                if true {
                    panic!("boom in poll")
                }
            }),
        )
        .readiness(
            "sync-panic",
            fn_check(|| -> std::future::Ready<()> { panic!("boom in call") }),
        )
        .readiness("ok", fn_check(|| async { true }))
        .build()
        .unwrap();
    let report = health.evaluate(Probe::Readiness).await;
    assert_eq!(report.status(), Status::Fail);
    for name in ["async-panic", "sync-panic"] {
        let c = report.check(name).unwrap();
        assert_eq!(
            (c.status(), c.output()),
            (Status::Fail, Some("check panicked"))
        );
    }
    assert_eq!(report.check("ok").unwrap().status(), Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn fail_after_and_recover_after_smooth_flaps() {
    let s = Scripted::new(Duration::ZERO);
    let health = HealthChecks::builder()
        .readiness("flaky", s.clone())
        .fail_after(3)
        .recover_after(2)
        .cache_for(Duration::ZERO)
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let script = [
        Status::Pass, // first reading
        Status::Fail,
        Status::Fail,
        Status::Pass, // resets the failure count
        Status::Fail,
        Status::Fail,
        Status::Fail, // third in a row: down
        Status::Pass,
        Status::Fail, // resets the recovery count
        Status::Pass,
        Status::Pass, // second in a row: up
    ];
    for status in script {
        s.set(status);
        seen.push(health.evaluate(Probe::Readiness).await.status());
    }
    use Status::{Fail as F, Pass as P};
    assert_eq!(seen, [P, P, P, P, P, P, F, F, F, F, P]);
    assert_eq!(s.runs(), script.len());
}

#[tokio::test(start_paused = true)]
async fn recovering_note_names_the_failure_once() {
    let s = Scripted::new(Duration::ZERO);
    let health = HealthChecks::builder()
        .readiness("db", s.clone())
        .recover_after(3)
        .cache_for(Duration::ZERO)
        .build()
        .unwrap();
    s.set(Status::Fail);
    health.evaluate(Probe::Readiness).await;
    s.set(Status::Pass);
    let mut notes = Vec::new();
    for _ in 0..3 {
        let report = health.evaluate(Probe::Readiness).await;
        let db = report.check("db").unwrap();
        notes.push((db.status(), db.output().unwrap().to_owned()));
    }
    assert_eq!(
        notes,
        [
            (
                Status::Fail,
                "scripted fail (recovering: 1 of 3 passes)".to_owned()
            ),
            (
                Status::Fail,
                "scripted fail (recovering: 2 of 3 passes)".to_owned()
            ),
            (Status::Pass, "scripted pass".to_owned()),
        ]
    );
}

#[tokio::test]
async fn non_critical_failure_warns_with_200() {
    let health = HealthChecks::builder()
        .register(
            CheckSpec::new("cdn", fn_check(|| async { false }))
                .readiness()
                .non_critical(),
        )
        .readiness("db", fn_check(|| async { true }))
        .build()
        .unwrap();
    let report = health.evaluate(Probe::Readiness).await;
    assert_eq!(report.status(), Status::Warn);
    assert_eq!(report.http_status(), 200);
    assert_eq!(report.check("cdn").unwrap().status(), Status::Warn);
}

#[tokio::test]
async fn probes_select_their_checks() {
    let health = HealthChecks::builder()
        .liveness("loop", fn_check(|| async { true }))
        .readiness("db", fn_check(|| async { false }))
        .register(
            CheckSpec::new("both", fn_check(|| async { true }))
                .liveness()
                .readiness(),
        )
        .register(CheckSpec::new("deep", fn_check(|| async { true })))
        .build()
        .unwrap();
    let names = |r: &Report| {
        r.checks()
            .iter()
            .map(|c| c.name().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&health.evaluate(Probe::Liveness).await),
        ["loop", "both"]
    );
    assert_eq!(
        names(&health.evaluate(Probe::Readiness).await),
        ["db", "both"]
    );
    assert_eq!(
        names(&health.evaluate(Probe::Health).await),
        ["loop", "db", "both", "deep"]
    );
    assert!(health.evaluate_check(Probe::Liveness, "db").await.is_none());
    assert_eq!(
        health
            .evaluate_check(Probe::Readiness, "db")
            .await
            .unwrap()
            .http_status(),
        503
    );
}

#[tokio::test]
async fn shutting_down_fails_readiness_only() {
    let ok = Scripted::new(Duration::ZERO);
    let health = HealthChecks::builder()
        .liveness("loop", fn_check(|| async { true }))
        .readiness("db", ok.clone())
        .build()
        .unwrap();
    assert_eq!(health.evaluate(Probe::Readiness).await.http_status(), 200);
    health.shutting_down();
    let report = health.evaluate(Probe::Readiness).await;
    assert_eq!(
        (report.http_status(), report.output()),
        (503, Some("shutting down"))
    );
    assert_eq!(health.evaluate(Probe::Liveness).await.http_status(), 200);
    assert_eq!(
        ok.runs(),
        1,
        "a draining instance doesn't query its dependencies"
    );
}

#[tokio::test]
async fn require_mark_ready_gates_readiness() {
    let health = HealthChecks::builder()
        .readiness("db", fn_check(|| async { true }))
        .require_mark_ready()
        .build()
        .unwrap();
    let report = health.evaluate(Probe::Readiness).await;
    assert_eq!(
        (report.http_status(), report.output()),
        (503, Some("starting"))
    );
    assert_eq!(health.evaluate(Probe::Liveness).await.http_status(), 200);
    health.mark_ready();
    assert_eq!(health.evaluate(Probe::Readiness).await.http_status(), 200);
}

#[tokio::test(start_paused = true)]
async fn background_mode_serves_snapshots() {
    let s = Scripted::new(Duration::from_millis(10));
    let health = HealthChecks::builder()
        .readiness("db", s.clone())
        .background(Duration::from_secs(10))
        .build()
        .unwrap();

    // Before the first run: a probe runs the check once, rather than
    // answering 503 for a check nobody ran.
    assert_eq!(health.evaluate(Probe::Readiness).await.http_status(), 200);
    assert_eq!(s.runs(), 1);

    let task = health.spawn_background();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.runs(), 2, "initial run at start");
    for _ in 0..100 {
        assert_eq!(health.evaluate(Probe::Readiness).await.http_status(), 200);
    }
    assert_eq!(s.runs(), 2, "probes only read the snapshot");

    s.set(Status::Fail);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(s.runs(), 3);
    assert_eq!(health.evaluate(Probe::Readiness).await.http_status(), 503);

    // A second background task would overlap runs: it refuses to start.
    health.background_task().await;
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn status_changes_are_published_once_per_flip() {
    let s = Scripted::new(Duration::ZERO);
    let changes = Arc::new(Mutex::new(Vec::new()));
    let health = {
        let changes = changes.clone();
        HealthChecks::builder()
            .readiness("db", s.clone())
            .cache_for(Duration::ZERO)
            .on_status_change(move |c| {
                changes
                    .lock()
                    .unwrap()
                    .push((c.check.to_string(), c.previous, c.current))
            })
            .on_status_change(|_| panic!("a broken listener must not break probes"))
            .build()
            .unwrap()
    };
    for status in [
        Status::Pass,
        Status::Pass,
        Status::Fail,
        Status::Fail,
        Status::Pass,
    ] {
        s.set(status);
        health.evaluate(Probe::Readiness).await;
    }
    let db = "db".to_owned();
    assert_eq!(
        *changes.lock().unwrap(),
        [
            (db.clone(), None, Status::Pass),
            (db.clone(), Some(Status::Pass), Status::Fail),
            (db, Some(Status::Fail), Status::Pass),
        ]
    );
}

#[tokio::test]
async fn respond_hides_error_text_unless_allowed() {
    let failing = || fn_check(|| async { Err::<(), _>("db.internal:5432 refused") });
    let never = HealthChecks::builder()
        .readiness("db", failing())
        .build()
        .unwrap();
    let res = never
        .respond(ProbeRequest::new("GET", "/readyz").query(Some("verbose")))
        .await;
    assert_eq!(res.status(), 503);
    let body = String::from_utf8_lossy(res.body()).into_owned();
    assert!(!body.contains("db.internal"), "{body}");
    assert!(body.contains(r#""db":[{"status":"fail""#), "{body}");

    let token = HealthChecks::builder()
        .readiness("db", failing())
        .details(Details::with_token("s3cret"))
        .build()
        .unwrap();
    for (query, auth, shown) in [
        (None, Some(&b"Bearer s3cret"[..]), true),
        (None, Some(&b"bearer  s3cret "[..]), true),
        (Some("token=s3cret"), None, true),
        (None, Some(&b"Bearer s3cre"[..]), false),
        (Some("token=wrong"), Some(&b"Basic s3cret"[..]), false),
        (None, None, false),
    ] {
        let res = token
            .respond(
                ProbeRequest::new("GET", "/readyz")
                    .query(query)
                    .authorization(auth),
            )
            .await;
        let body = String::from_utf8_lossy(res.body()).into_owned();
        assert_eq!(
            body.contains("db.internal"),
            shown,
            "{query:?} {auth:?}: {body}"
        );
    }
}

#[test]
fn build_rejects_bad_configuration() {
    let ok = || fn_check(|| async {});
    let err = |b: HealthChecksBuilder| b.build().unwrap_err();
    assert_eq!(
        err(HealthChecks::builder()
            .readiness("db", ok())
            .liveness("db", ok())),
        BuildError::DuplicateName("db".into())
    );
    assert_eq!(
        err(HealthChecks::builder().readiness("a/b", ok())),
        BuildError::InvalidName("a/b".into())
    );
    assert_eq!(
        err(HealthChecks::builder().register(CheckSpec::new("x", ok()).fail_after(0))),
        BuildError::ZeroThreshold {
            check: Some("x".into())
        }
    );
    assert_eq!(
        err(HealthChecks::builder().timeout(Duration::ZERO)),
        BuildError::ZeroTimeout { check: None }
    );
    assert_eq!(
        err(HealthChecks::builder().details(Details::with_token(" \n"))),
        BuildError::EmptyToken
    );
    assert!(matches!(
        err(HealthChecks::builder().paths("/live", "/live", "/health")),
        BuildError::InvalidPath(_)
    ));
    assert!(matches!(
        err(HealthChecks::builder().paths("/live/", "/ready", "/health")),
        BuildError::InvalidPath(_)
    ));
    let e = err(HealthChecks::builder().readiness("", ok()));
    assert_eq!(
        e.to_string(),
        "invalid check name \"\": it must be non-empty and contain no '/'"
    );
}

#[test]
fn token_debug_is_redacted() {
    let d = format!("{:?}", Details::with_token("s3cret"));
    assert!(!d.contains("s3cret"), "{d}");
}

#[tokio::test]
async fn check_objects_carry_their_component_type() {
    use crate::checks::TcpCheck;
    let health = HealthChecks::builder()
        .readiness(
            "cache",
            TcpCheck::new("127.0.0.1:9").timeout(Duration::from_millis(200)),
        )
        .readiness("closure", fn_check(|| async { true }))
        .register(
            CheckSpec::new("billing", fn_check(|| async { true }))
                .readiness()
                .component_type("api"),
        )
        .build()
        .unwrap();
    let report = health.evaluate(Probe::Readiness).await;
    let kinds: Vec<(&str, &str)> = report
        .checks()
        .iter()
        .map(|c| (c.name(), c.component_type()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("cache", "system"),
            ("closure", "component"),
            ("billing", "api")
        ]
    );
    let res = health.respond(ProbeRequest::new("GET", "/readyz")).await;
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["checks"]["cache"][0]["componentType"], "system");
    assert_eq!(body["checks"]["closure"][0]["componentType"], "component");
}
