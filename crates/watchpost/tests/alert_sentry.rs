//! The Sentry sink against a fake Sentry that answers like Relay does: the
//! envelope it posts (parsed back with sentry-types), how it follows the
//! answers, and the DSN's key never showing, in a log line (at any level, on
//! any thread), a `Debug` print or an error.
#![cfg(feature = "sentry")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sentry_types::protocol::v7::{Envelope, Event, Level};
use watchpost::alert::{Alert, Alerter, AlerterBuilder, Dsn, SentrySink, Stats};
use watchpost::panic::{CatchScope, PanicHook};
use watchpost_testkit::fake_http::{closed_port, sentry_error, sentry_ok, FakeHttp, Recorded};
use watchpost_testkit::logs::{capture_global, captured};

const KEY: &str = "5ecre7dsnkey0123456789abcdef0000";
const PROJECT: &str = "4505";
/// Only catches hangs: every test here finishes in a few seconds.
const FLUSH: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ logs --

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(KEY), "{what} shows the DSN's key: {text}");
}

fn assert_logged(message: &str) {
    let logs = captured();
    assert_clean("the logs", &logs);
    assert!(
        logs.contains(message),
        "expected {message:?} in the logs:\n{logs}"
    );
}

// --------------------------------------------------------------- helpers --

fn dsn(port: u16) -> String {
    format!("http://{KEY}@127.0.0.1:{port}/{PROJECT}")
}

fn sink(server: &FakeHttp) -> SentrySink {
    SentrySink::from_dsn_str(&dsn(server.addr().port())).unwrap()
}

fn builder(sink: SentrySink) -> AlerterBuilder {
    capture_global();
    assert_clean("Debug of the sink", &format!("{sink:?}"));
    Alerter::builder()
        .service("checkout-api")
        .environment("production")
        .host("web-1")
        .version("1.4.2")
        .sink(sink)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .max_attempts(3)
}

fn alerter(sink: SentrySink) -> Alerter {
    let builder = builder(sink);
    assert_clean("Debug of the builder", &format!("{builder:?}"));
    let alerter = builder.build().unwrap();
    assert_clean("Debug of the alerter", &format!("{alerter:?}"));
    alerter
}

fn flushed(alerter: &Alerter) -> Stats {
    assert!(alerter.flush(FLUSH), "not flushed: {:?}", alerter.stats());
    assert_clean("the logs", &captured());
    alerter.stats()
}

fn event(request: &Recorded) -> Event<'static> {
    let envelope = Envelope::from_slice(&request.body).unwrap();
    let event = envelope.event().expect("an event item").clone();
    assert_eq!(envelope.uuid(), Some(&event.event_id));
    event
}

fn events(server: &FakeHttp) -> Vec<Event<'static>> {
    server.requests().iter().map(event).collect()
}

// ----------------------------------------------------------- the request --

#[test]
fn send_posts_an_envelope_to_the_project() {
    let server = FakeHttp::start(sentry_ok());
    let a = alerter(sink(&server));
    a.send(
        Alert::error("Payment failed")
            .detail("card declined")
            .label("route", "/pay"),
    );
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (1, 0));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/api/{PROJECT}/envelope/"));
    assert_eq!(
        r.header("content-type"),
        Some("application/x-sentry-envelope")
    );
    assert_eq!(
        r.header("x-sentry-auth"),
        Some(
            format!(
                "Sentry sentry_version=7, sentry_client=watchpost/{}, sentry_key={KEY}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        )
    );
    // The key travels in the header only.
    assert!(!String::from_utf8_lossy(&r.body).contains(KEY));

    let e = event(r);
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.message.as_deref(), Some("Payment failed\ncard declined"));
    assert_eq!(e.release.as_deref(), Some("1.4.2"));
    assert_eq!(e.environment.as_deref(), Some("production"));
    assert_eq!(e.server_name.as_deref(), Some("web-1"));
    assert_eq!(e.logger.as_deref(), Some("watchpost"));
    assert_eq!(e.tags["route"], "/pay");
    assert_eq!(e.tags["service"], "checkout-api");
    assert_eq!(e.tags["watchpost.kind"], "alert");
    assert_eq!(e.tags["watchpost.severity"], "error");
    let key = Alert::error("Payment failed").dedupe_key().into_owned();
    assert_eq!(e.fingerprint.to_vec(), [key]);
    assert_eq!(e.event_id.get_version_num(), 4);
}

#[test]
fn each_event_has_a_fresh_id_and_its_level() {
    let server = FakeHttp::start(sentry_ok());
    let a = alerter(sink(&server));
    a.send(Alert::info("Deploy finished"));
    a.send(Alert::warning("Disk 91% full"));
    a.send(Alert::critical("Database down"));
    assert_eq!(flushed(&a).sent, 3);
    let events = events(&server);
    let levels: Vec<Level> = events.iter().map(|e| e.level).collect();
    assert_eq!(levels, [Level::Info, Level::Warning, Level::Fatal]);
    assert_ne!(events[0].event_id, events[1].event_id);
    assert_ne!(events[1].event_id, events[2].event_id);
}

#[test]
fn an_incident_is_one_issue_firing_then_resolved() {
    let server = FakeHttp::start(sentry_ok());
    let a = alerter(sink(&server));
    a.fire("queue-depth", Alert::warning("Queue depth 1200"));
    flushed(&a);
    a.resolve("queue-depth");
    assert_eq!(flushed(&a).sent, 2);
    let events = events(&server);
    let (firing, resolved) = (&events[0], &events[1]);
    assert_eq!(firing.message.as_deref(), Some("FIRING: Queue depth 1200"));
    assert_eq!(firing.tags["watchpost.kind"], "firing");
    assert_eq!(firing.level, Level::Warning);
    assert!(resolved
        .message
        .as_deref()
        .unwrap()
        .starts_with("RESOLVED: Queue depth 1200\nlasted "));
    assert_eq!(resolved.tags["watchpost.kind"], "resolved");
    assert_eq!(resolved.level, Level::Info);
    assert_eq!(firing.fingerprint.to_vec(), ["queue-depth"]);
    assert_eq!(resolved.fingerprint, firing.fingerprint);
}

#[test]
fn from_env_adds_the_sentry_sink() {
    let server = FakeHttp::start(sentry_ok());
    capture_global();
    let url = dsn(server.addr().port());
    let a = AlerterBuilder::from_lookup(|name| match name {
        "WATCHPOST_SENTRY_DSN" => Some(format!("{url}\n").into()),
        "WATCHPOST_ENV" => Some("staging".into()),
        _ => None,
    })
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(a.sink_names().collect::<Vec<_>>(), ["sentry"]);
    a.send(Alert::error("from the environment"));
    assert_eq!(flushed(&a).sent, 1);
    let e = &events(&server)[0];
    assert_eq!(e.environment.as_deref(), Some("staging"));
}

// ---------------------------------------------------------------- panics --

/// The real hook, in a catch scope (so it sends without holding the thread):
/// the event is an exception with the panicking closure as its last frame.
#[test]
fn a_panic_through_the_hook_is_an_exception_with_its_stack_trace() {
    let server = FakeHttp::start(sentry_ok());
    let a = alerter(sink(&server));
    PanicHook::new(&a).try_install().unwrap();
    let caught = CatchScope::for_request("GET", "/orders/42")
        .run(|| -> u32 { panic!("no such order: {}", 42) })
        .unwrap_err();
    assert!(caught.is_reported());
    assert_eq!(flushed(&a).sent, 1);

    let e = &events(&server)[0];
    assert_eq!(e.level, Level::Fatal);
    assert_eq!(e.platform, "native");
    assert_eq!(e.tags["request"], "GET /orders/42");
    assert!(
        e.tags["location"].contains("alert_sentry.rs"),
        "{:?}",
        e.tags
    );
    assert_eq!(e.fingerprint.len(), 1);
    assert!(
        e.fingerprint[0].starts_with("panic:"),
        "{:?}",
        e.fingerprint
    );
    assert!(e.fingerprint[0].contains("alert_sentry.rs"));

    assert_eq!(e.exception.len(), 1);
    let ex = &e.exception[0];
    assert_eq!(ex.ty, "panic");
    assert_eq!(ex.value.as_deref(), Some("no such order: 42"));
    assert_eq!(ex.mechanism.as_ref().unwrap().handled, Some(false));
    let frames = &ex.stacktrace.as_ref().expect("a stack trace").frames;
    // Sentry order: the oldest call first, the panicking closure last.
    let last = frames.last().unwrap();
    let function = last.function.as_deref().unwrap();
    assert!(
        function.contains("a_panic_through_the_hook_is_an_exception_with_its_stack_trace"),
        "{frames:#?}"
    );
    assert_eq!(last.filename.as_deref(), Some("alert_sentry.rs"));
    assert!(last.lineno.is_some());
    assert!(frames.len() <= 25);
}

// --------------------------------------------------------------- answers --

#[test]
fn a_429_waits_its_retry_after_then_succeeds() {
    let server = FakeHttp::start(sentry_ok());
    server.push(sentry_error(429, "slow down (retry-after case)", None).header("retry-after", "1"));
    let a = alerter(sink(&server));
    a.send(Alert::error("rate limited by retry-after"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (1, 0));
    assert_eq!(server.requests().len(), 2);
    assert_logged("retrying in 1s: HTTP 429: slow down (retry-after case)");
}

#[test]
fn a_429_waits_the_longest_sentry_rate_limit_for_errors() {
    let server = FakeHttp::start(sentry_ok());
    server.push(sentry_error(
        429,
        "slow down (x-sentry-rate-limits case)",
        Some("2700:transaction:key, 1:error;default:organization:quota_exceeded, 0.5::key"),
    ));
    let a = alerter(sink(&server));
    a.send(Alert::error("rate limited by x-sentry-rate-limits"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (1, 0));
    assert_eq!(server.requests().len(), 2);
    // 1 s: not the transactions' 2700 s, nor the 60 s of a bare 429.
    assert_logged("retrying in 1s: HTTP 429: slow down (x-sentry-rate-limits case)");
}

#[test]
fn a_rate_limit_on_an_accepted_event_holds_the_next_one() {
    let server = FakeHttp::start(sentry_ok());
    server.push(sentry_ok().header("x-sentry-rate-limits", "1:error:key"));
    let a = alerter(sink(&server));
    a.send(Alert::error("accepted, with a rate limit"));
    assert_eq!(flushed(&a).sent, 1);
    a.send(Alert::error("held until the limit passes"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (2, 0));
    // Held without a request, then sent once.
    assert_eq!(server.requests().len(), 2);
    assert_logged("Sentry asked to send nothing for");
}

#[test]
fn a_5xx_is_retried() {
    let server = FakeHttp::start(sentry_ok());
    server.push(sentry_error(500, "internal error", None));
    server.push(sentry_error(503, "upstream unavailable", None));
    let a = alerter(sink(&server));
    a.send(Alert::error("5xx then ok"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (1, 0));
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_400_is_not_retried() {
    let server = FakeHttp::start(sentry_error(400, "invalid event envelope (400 case)", None));
    let a = alerter(sink(&server));
    a.send(Alert::error("bad request"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (0, 1));
    assert_eq!(server.requests().len(), 1);
    assert_logged(
        "refused by the sink, not retried; last error: HTTP 400: invalid event envelope (400 case)",
    );
}

#[test]
fn a_401_disables_the_sink() {
    let server = FakeHttp::start(sentry_error(401, "invalid api key", None));
    let a = alerter(sink(&server));
    a.send(Alert::error("first"));
    flushed(&a);
    a.send(Alert::error("second"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (0, 2));
    assert_eq!(server.requests().len(), 1, "nothing sent once disabled");
    assert_logged(
        "alert sink sentry is disabled for the life of the process: Sentry rejected the DSN's key \
         (HTTP 401: invalid api key): check WATCHPOST_SENTRY_DSN",
    );
}

#[test]
fn a_403_disables_the_sink() {
    let server = FakeHttp::start(sentry_error(403, "project disabled (403 case)", None));
    let a = alerter(sink(&server));
    a.send(Alert::error("forbidden"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (0, 1));
    assert_logged("Sentry refused events for this DSN (HTTP 403: project disabled (403 case))");
}

#[test]
fn a_refused_connection_is_transient() {
    let sink = SentrySink::from_dsn_str(&dsn(closed_port())).unwrap();
    let a = alerter(sink);
    a.send(Alert::error("refused"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (0, 1));
    assert_logged("attempts used up; last error: cannot connect");
}

#[test]
fn a_timeout_is_transient() {
    let server = FakeHttp::start(sentry_ok().delay(Duration::from_secs(3)));
    let a = builder(sink(&server))
        .attempt_timeout(Duration::from_millis(200))
        .max_attempts(2)
        .build()
        .unwrap();
    a.send(Alert::error("timeout"));
    let stats = flushed(&a);
    assert_eq!((stats.sent, stats.failed), (0, 1));
    assert_eq!(server.requests().len(), 2);
    assert_logged("no answer within 200ms");
}

// --------------------------------------------------------------- secrets --

#[test]
fn a_server_echoing_the_key_is_scrubbed() {
    let server = FakeHttp::start(sentry_error(
        400,
        &format!("no project for sentry_key={KEY} (echo case)"),
        None,
    ));
    let a = alerter(sink(&server));
    a.send(Alert::error("echo"));
    flushed(&a);
    assert_logged("no project for sentry_key=[redacted] (echo case)");
}

#[test]
fn dsn_errors_and_prints_never_show_the_key() {
    capture_global();
    for bad in [
        KEY.to_owned(),
        format!("ftp://{KEY}@127.0.0.1/{PROJECT}"),
        format!("https://{KEY}@127.0.0.1/"),
        format!("https://{KEY},x@127.0.0.1/{PROJECT}"),
        format!("https://{KEY}@:9000/{PROJECT}"),
    ] {
        let err = bad.parse::<Dsn>().unwrap_err();
        assert_clean("the parse error's Display", &err.to_string());
        assert_clean("the parse error's Debug", &format!("{err:?}"));
        let err = SentrySink::from_dsn_str(&bad).unwrap_err();
        assert_eq!(err.name(), Some("WATCHPOST_SENTRY_DSN"));
        assert_clean("the config error's Display", &err.to_string());
        assert_clean("the config error's Debug", &format!("{err:?}"));
        let err = AlerterBuilder::from_lookup(|name| {
            (name == "WATCHPOST_SENTRY_DSN").then(|| bad.clone().into())
        })
        .unwrap_err();
        assert_eq!(err.name(), Some("WATCHPOST_SENTRY_DSN"));
        assert_clean("the from_env error", &format!("{err} {err:?}"));
    }
    let dsn: Dsn = dsn(9000).parse().unwrap();
    assert_clean("the DSN's Display", &dsn.to_string());
    assert_clean("the DSN's Debug", &format!("{dsn:?}"));
    assert_eq!(
        dsn.to_string(),
        format!("http://[redacted]@127.0.0.1:9000/{PROJECT}")
    );
    assert_clean("the logs", &captured());
}
