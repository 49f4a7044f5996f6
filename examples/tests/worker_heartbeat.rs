//! Drives the worker_heartbeat example from outside: runs that fail, a
//! worker that stalls and one that panics each send one firing and one
//! resolved message to a fake Telegram, and `/livez` answers 503 while
//! the worker is down.
//!
//! The worker runs every second with one period of grace (so only a
//! scheduling stall of a whole second on a busy machine could look like a
//! missed run); the broken runs keep it down for several seconds, longer
//! than the probes' one-second cache, so a poll sees the 503.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

mod common;

use common::{get, telegram_env, telegram_texts, wait_until, Server, HANG};
use watchpost_testkit::fake_http::{telegram_ok, FakeHttp};

const BIN: &str = env!("CARGO_BIN_EXE_worker-heartbeat-e2e");

/// The worker with `breaks` (`WORKER_BREAK`), alerting to `telegram`.
fn start(telegram: &FakeHttp, breaks: &str) -> Server {
    let mut envs = telegram_env(telegram, "invoices");
    envs.push(("WORKER_PERIOD_MS", "1000".to_owned()));
    envs.push(("WORKER_BREAK", breaks.to_owned()));
    Server::start(BIN, &envs)
}

/// `/livez` turns 503 (with the reason kept out of the body), `/` says
/// `down`, then `/livez` is back to 200.
fn livez_fails_then_recovers(server: &Server) {
    assert!(
        wait_until(|| get(server.port, "/livez").0 == 503),
        "/livez never answered 503"
    );
    let (_, _, body) = get(server.port, "/healthz?verbose");
    assert!(
        body.contains(r#""invoice-sync":[{"status":"fail""#),
        "{body}"
    );
    assert!(
        !body.contains("invoice API"),
        "details stay private: {body}"
    );
    assert!(
        wait_until(|| get(server.port, "/livez").0 == 200),
        "/livez never recovered"
    );
    assert_eq!(get(server.port, "/readyz").0, 200, "not a readiness check");
}

#[cfg(unix)]
#[test]
fn failing_runs_fire_one_incident_and_the_next_success_resolves_it() {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(&telegram, "fail:3-6");
    livez_fails_then_recovers(&server);
    assert!(telegram.wait_for(2, HANG), "firing and resolved");
    assert_eq!(get(server.port, "/").2, "invoice-sync: up\n");

    assert!(server.terminate().success(), "exit 0");
    let texts = telegram_texts(&telegram);
    assert_eq!(texts.len(), 2, "four failed runs, one incident: {texts:#?}");
    assert!(
        texts[0].contains("FIRING: Heartbeat invoice-sync failed"),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains("invoice API answered 503"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("invoices"), "the service: {}", texts[0]);
    assert!(
        texts[1].contains("RESOLVED: Heartbeat invoice-sync failed"),
        "{}",
        texts[1]
    );
    assert!(!server.output().contains("SECRET-examples-token"));
}

#[cfg(unix)]
#[test]
fn a_stalled_worker_misses_its_deadline_once() {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(&telegram, "stall:3-10");
    livez_fails_then_recovers(&server);
    assert!(telegram.wait_for(2, HANG), "firing and resolved");

    assert!(server.terminate().success(), "exit 0");
    let texts = telegram_texts(&telegram);
    assert_eq!(texts.len(), 2, "{texts:#?}");
    // Nothing failed: only the silence past the deadline said something.
    assert!(
        texts[0].contains("FIRING: Heartbeat invoice-sync missed"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].contains("RESOLVED: Heartbeat invoice-sync missed"),
        "{}",
        texts[1]
    );
}

#[cfg(unix)]
#[test]
fn a_panicking_run_fails_the_heartbeat_and_the_worker_goes_on() {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(&telegram, "panic:3");
    // The panic itself, the failed run, and its resolution by run 4.
    assert!(
        telegram.wait_for(3, HANG),
        "{:#?}",
        telegram_texts(&telegram)
    );
    assert!(wait_until(|| get(server.port, "/livez").0 == 200));

    assert!(server.terminate().success(), "exit 0");
    let texts = telegram_texts(&telegram);
    assert_eq!(texts.len(), 3, "{texts:#?}");
    let one = |needle: &str| texts.iter().filter(|t| t.contains(needle)).count();
    assert_eq!(one("demo panic in invoice sync run 3"), 1, "{texts:#?}");
    assert_eq!(
        one("FIRING: Heartbeat invoice-sync failed"),
        1,
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("FIRING") && t.contains("run panicked")),
        "the run's guard saw the panic: {texts:#?}"
    );
    // Resolved by the next run: the worker went on after the panic.
    assert_eq!(one("RESOLVED: Heartbeat invoice-sync failed"), 1);
}

#[test]
fn an_invalid_worker_break_is_a_clear_startup_error() {
    for (var, value) in [
        ("WORKER_BREAK", "explode:3"),
        ("WORKER_BREAK", "fail:5-2"),
        ("WORKER_PERIOD_MS", "0"),
    ] {
        let (status, output) = common::run_to_exit(BIN, &[(var, value.to_owned())]);
        assert!(!status.success(), "{var}={value}");
        assert!(output.contains(var), "{var}={value}: {output}");
    }
}
