//! Drives both quickstart binaries from outside, as a user would: probes
//! over real TCP, a dead upstream, rate limits, panics reported to a fake
//! Telegram Bot API, and SIGTERM.
//!
//! The axum quickstart (`quickstart.rs`) and the actix-web one
//! (`actix_quickstart.rs`) have one contract: every contract test runs
//! against each, as `NAME::axum` and `NAME::actix` (filter by `NAME` to run
//! both), and `axum_and_actix_answer_alike` sends both the same requests
//! and compares the answers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

mod common;

use std::fmt;
use std::time::{Duration, Instant};

use common::{free_port, get, get_with, request, request_raw, Server};
use watchpost_testkit::fake_http::{telegram_error, telegram_ok, telegram_texts, FakeHttp, Reply};

/// Which quickstart a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// `examples/quickstart.rs`.
    Axum,
    /// `examples/actix_quickstart.rs`.
    Actix,
}

impl Flavor {
    /// The quickstart program (built as a binary of this package, so cargo
    /// rebuilds it before these tests).
    fn bin(self) -> &'static str {
        match self {
            Flavor::Axum => env!("CARGO_BIN_EXE_quickstart-e2e"),
            Flavor::Actix => env!("CARGO_BIN_EXE_actix-quickstart-e2e"),
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Axum => "axum",
            Flavor::Actix => "actix",
        })
    }
}

/// Runs each contract test (a `fn(Flavor)` of the same name) against both
/// quickstarts, as the tests `NAME::axum` and `NAME::actix`.
macro_rules! contract_tests {
    ($($(#[$attr:meta])* $name:ident,)+) => {$(
        $(#[$attr])*
        mod $name {
            use super::{run_as, Flavor};

            #[test]
            fn axum() {
                run_as(Flavor::Axum, super::$name);
            }

            #[test]
            fn actix() {
                run_as(Flavor::Actix, super::$name);
            }
        }
    )+};
}

contract_tests! {
    probes_answer_and_the_greeting_works,
    a_dead_upstream_fails_readiness_only_and_stays_private,
    #[cfg(unix)]
    sigterm_fails_readiness_then_exits_cleanly,
    an_invalid_upstream_url_is_a_clear_startup_error,
    rate_limit_allows_five_of_ten_and_spares_the_probes,
    behind_the_local_proxy_clients_are_their_forwarded_address,
    garbage_forwarding_headers_never_cause_a_500,
    an_invalid_rate_limit_is_a_clear_startup_error,
    #[cfg(unix)]
    a_handler_panic_alerts_once_and_serving_goes_on,
    #[cfg(unix)]
    a_telegram_429_is_waited_out_and_pending_alerts_are_flushed_at_exit,
    a_half_configured_telegram_is_a_clear_startup_error,
    #[cfg(unix)]
    a_burst_of_errors_raises_exactly_one_error_rate_alert,
    #[cfg(unix)]
    the_monitor_counts_the_routes_not_the_probes_or_unknown_paths,
    readyz_postgres_follows_the_database,
    readyz_postgres_is_503_when_the_database_is_unreachable,
    an_invalid_database_url_is_a_clear_startup_error,
    #[cfg(unix)]
    two_quickstarts_sharing_redis_send_one_message_for_the_same_panic,
    two_quickstarts_sharing_redis_let_a_client_through_five_times_in_total,
    #[cfg(unix)]
    redis_down_still_alerts_and_says_so_once,
    #[cfg(target_os = "linux")]
    an_upstream_going_away_alerts_with_no_probe_and_resolves_on_one_thread,
    #[cfg(unix)]
    a_telegram_outage_of_a_minute_loses_no_alert,
}

/// Runs `test` against the `flavor` quickstart; its failure message starts
/// with the flavor.
fn run_as(flavor: Flavor, test: fn(Flavor)) {
    if let Err(panic) = std::panic::catch_unwind(|| test(flavor)) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(a panic without a message)");
        panic!("{flavor} quickstart: {message}");
    }
}

/// Runs the program expecting it to exit (a startup error): whether it
/// exited 0, and what it printed.
fn run_to_exit(flavor: Flavor, envs: &[(&str, &str)]) -> (bool, String) {
    let mut all = vec![("PORT", free_port().to_string())];
    all.extend(envs.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let (status, output) = common::run_to_exit(flavor.bin(), &all);
    (status.success(), output)
}

/// The `flavor` quickstart, serving on a free port.
fn start(flavor: Flavor, envs: &[(&str, String)]) -> Server {
    Server::start(flavor.bin(), envs)
}

/// The axum and the actix-web quickstart, given the same environment and
/// the same requests, answer with the same status line, headers and body,
/// and print the same lines at startup.
///
/// Left out of the comparison, as not the quickstarts' doing:
/// - the `date` header (each server's clock);
/// - `content-length`, which is framing: each side's must be its own
///   body's length, and the bodies are compared. On answers to HEAD (no
///   body sent) it is not compared: hyper leaves it out when the body it
///   was given is empty, actix-http writes `content-length: 0`;
/// - the `time` and `durationMs` of a check in a verbose report: when each
///   process ran the check and how long it took (so a verbose report's
///   length may differ too).
///
/// Everything else must match: the status line, header names
/// (case-insensitive, as in HTTP), values (exactly), how many times each
/// header appears, and the bodies (byte for byte, measurements aside).
#[test]
fn axum_and_actix_answer_alike() {
    let dead = free_port(); // nothing listens there any more
    let envs = [
        ("UPSTREAM_URL", format!("http://127.0.0.1:{dead}/health")),
        ("RATE_LIMIT", "5/min".to_owned()),
    ];
    let axum = start(Flavor::Axum, &envs);
    let actix = start(Flavor::Actix, &envs);
    // The same request to each; the status (the same, or this fails).
    let ask = |method: &str, path: &str, headers: &str| -> u16 {
        let a = request_raw(axum.port, method, path, headers.as_bytes());
        let b = request_raw(actix.port, method, path, headers.as_bytes());
        assert_same(&format!("{method} {path} {headers:?}"), method, &a, &b);
        a.0
    };

    // Each request of this list comes from a client of its own, forwarded
    // by the test (from 127.0.0.1: a trusted proxy), so that its quota
    // headers are a first request's however long the ones before took.
    let requests = [
        ("GET", "/", 200),
        ("HEAD", "/", 200),
        ("OPTIONS", "/", 405),
        ("POST", "/", 405),
        ("GET", "/livez", 200),
        ("GET", "/readyz", 503),
        ("GET", "/healthz", 503),
        ("HEAD", "/livez", 200),
        ("HEAD", "/readyz", 503),
        ("OPTIONS", "/livez", 405),
        ("POST", "/readyz", 405),
        ("GET", "/livez?verbose", 200),
        ("GET", "/readyz?verbose", 503),
        ("GET", "/healthz?verbose", 503),
        ("GET", "/readyz?verbose&exclude=upstream", 200),
        ("GET", "/readyz/upstream", 503),
        ("GET", "/healthz/upstream?verbose", 503),
        ("GET", "/livez/upstream", 404),
        ("GET", "/readyz/nope", 404),
        ("GET", "/readyz/", 404),
        ("GET", "/livez/upstream/more", 404),
        ("GET", "/nope", 404),
        ("POST", "/nope", 404),
        ("HEAD", "/nope", 404),
        ("GET", "/error", 500),
        ("HEAD", "/error", 500),
        ("DELETE", "/error", 405),
        ("GET", "/panic", 500),
        ("HEAD", "/panic", 500),
        ("GET", "/panic?again", 500),
    ];
    for (i, (method, path, status)) in requests.into_iter().enumerate() {
        let client = format!("X-Forwarded-For: 198.51.100.{}\r\n", i + 1);
        assert_eq!(ask(method, path, &client), status, "{method} {path}");
    }
    // Straight from the test's address, no forwarding header.
    assert_eq!(ask("GET", "/", ""), 200);
    assert_eq!(ask("GET", "/healthz", ""), 503);

    // One client over its quota: 5 allowed, then 429 in text or JSON.
    let client = "X-Forwarded-For: 203.0.113.7\r\n";
    let statuses: Vec<u16> = (0..6).map(|_| ask("GET", "/", client)).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let json = format!("{client}Accept: application/json\r\n");
    assert_eq!(ask("GET", "/", &json), 429);
    assert_eq!(ask("HEAD", "/", client), 429);
    assert_eq!(ask("GET", "/nope", &json), 429);
    assert_eq!(ask("GET", "/panic", client), 429);
    assert_eq!(
        ask("GET", "/livez", client),
        200,
        "probes are never limited"
    );

    assert_eq!(
        startup_lines(&axum),
        startup_lines(&actix),
        "startup lines: axum (left) and actix (right) differ"
    );
}

/// Asserts that the axum and the actix-web answer to `what` are the same,
/// but for what `axum_and_actix_answer_alike` leaves out.
fn assert_same(
    what: &str,
    method: &str,
    axum: &(u16, String, String),
    actix: &(u16, String, String),
) {
    let normalize = |(_, head, body): &(u16, String, String)| {
        let mut lines = head.lines();
        let status_line = lines.next().unwrap().to_owned();
        let mut headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .filter(|(name, _)| name != "date")
            .filter(|(name, value)| {
                if name != "content-length" {
                    return true;
                }
                if method != "HEAD" {
                    assert_eq!(*value, body.len().to_string(), "{what}: {head}");
                }
                false
            })
            .collect();
        headers.sort();
        (status_line, headers, mask_measurements(body))
    };
    assert_eq!(
        normalize(axum),
        normalize(actix),
        "{what}: axum (left) and actix (right) differ"
    );
}

/// `body` with the measurements of a verbose report's checks (the values
/// of `"time"` and `"durationMs"`) replaced by `…`.
fn mask_measurements(body: &str) -> String {
    let mut masked = String::new();
    let mut rest = body;
    while let Some((at, key)) = ["\"time\":", "\"durationMs\":"]
        .into_iter()
        .filter_map(|key| rest.find(key).map(|at| (at, key)))
        .min()
    {
        let value = &rest[at + key.len()..];
        let end = match value.strip_prefix('"') {
            Some(string) => string.find('"').map_or(value.len(), |i| i + 2),
            None => value.find([',', '}']).unwrap_or(value.len()),
        };
        masked.push_str(&rest[..at + key.len()]);
        masked.push('…');
        rest = &value[end..];
    }
    masked.push_str(rest);
    masked
}

/// The lines a quickstart prints at startup (the URLs served, where alerts
/// go), its port written `PORT`.
fn startup_lines(server: &Server) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let output = loop {
        let output = server.output();
        if output.contains("alerts go to: ") {
            break output;
        }
        assert!(
            Instant::now() < deadline,
            "no \"alerts go to:\" line: {output}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    output
        .lines()
        .filter(|line| {
            line.starts_with("listening on ")
                || line.starts_with("  http://")
                || line.starts_with("alerts go to: ")
        })
        .map(|line| line.replace(&server.port.to_string(), "PORT"))
        .collect()
}

fn probes_answer_and_the_greeting_works(flavor: Flavor) {
    let server = start(flavor, &[]);
    let (status, _, body) = get(server.port, "/");
    assert_eq!((status, body.as_str()), (200, "Hello from watchpost!\n"));
    for path in ["/livez", "/readyz", "/healthz"] {
        let (status, head, body) = get(server.port, path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(head.contains("cache-control: no-store"), "{path}: {head}");
        assert!(
            head.contains("content-type: application/health+json"),
            "{path}: {head}"
        );
        assert!(body.contains(r#""status":"pass""#), "{path}: {body}");
    }
    assert_eq!(
        get(server.port, "/readyz/upstream").0,
        404,
        "no UPSTREAM_URL, no check"
    );
}

fn a_dead_upstream_fails_readiness_only_and_stays_private(flavor: Flavor) {
    let dead = free_port(); // nothing listens there any more
    let server = start(
        flavor,
        &[("UPSTREAM_URL", format!("http://127.0.0.1:{dead}/health"))],
    );
    for path in ["/readyz", "/readyz?verbose", "/readyz/upstream", "/healthz"] {
        let (status, head, body) = get(server.port, path);
        assert_eq!(status, 503, "{path}: {body}");
        assert!(head.contains("cache-control: no-store"), "{path}");
        assert!(
            body.contains(r#""upstream":[{"status":"fail""#),
            "{path}: {body}"
        );
        assert!(
            !body.contains("127.0.0.1") && !body.contains(&dead.to_string()),
            "{path} leaks the upstream address: {body}"
        );
    }
    let (status, _, body) = get(server.port, "/livez");
    assert_eq!(status, 200, "{body}");
}

#[cfg(unix)]
fn sigterm_fails_readiness_then_exits_cleanly(flavor: Flavor) {
    let mut server = start(flavor, &[]);
    assert_eq!(get(server.port, "/readyz").0, 200);
    server.sigterm();

    // During the drain delay: readiness 503, liveness 200.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = get(server.port, "/readyz");
        if status == 503 {
            assert!(body.contains("shutting down"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "readiness never flipped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(server.port, "/livez").0, 200);

    // Then a clean exit (generous bound: only catches a hang).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

fn an_invalid_upstream_url_is_a_clear_startup_error(flavor: Flavor) {
    let (success, stderr) = run_to_exit(flavor, &[("UPSTREAM_URL", "not a url")]);
    assert!(!success);
    assert!(stderr.contains("UPSTREAM_URL"), "{stderr}");
}

fn rate_limit_allows_five_of_ten_and_spares_the_probes(flavor: Flavor) {
    let server = start(flavor, &[("RATE_LIMIT", "5/min".to_owned())]);
    let statuses: Vec<(u16, String)> = (0..10)
        .map(|_| {
            let (status, head, _) = get(server.port, "/");
            (status, head)
        })
        .collect();
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<&String> = statuses
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, h)| h)
        .collect();
    assert_eq!((ok, limited.len()), (5, 5), "{statuses:?}");
    for head in &limited {
        let retry = head
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .expect("429 carries Retry-After");
        assert!(retry.trim().parse::<u64>().unwrap() >= 1, "{head}");
        assert!(
            head.contains("ratelimit-policy: \"default\";q=5;w=60"),
            "{head}"
        );
    }
    let (status, head, _) = get(server.port, "/");
    assert_eq!(status, 429);
    assert!(head.contains("x-ratelimit-remaining: 0"), "{head}");
    for path in ["/livez", "/readyz", "/healthz"] {
        for _ in 0..10 {
            assert_eq!(
                get(server.port, path).0,
                200,
                "{path} must never be limited"
            );
        }
    }
}

fn behind_the_local_proxy_clients_are_their_forwarded_address(flavor: Flavor) {
    let server = start(flavor, &[("RATE_LIMIT", "2/min".to_owned())]);
    // The test connects from 127.0.0.1: a trusted local proxy. Forged
    // leftmost entries vary; the real client (rightmost untrusted) doesn't.
    let mut statuses = Vec::new();
    for forged in ["6.6.6.1", "6.6.6.2", "6.6.6.3"] {
        let header = format!("X-Forwarded-For: {forged}, 198.51.100.7\r\n");
        statuses.push(get_with(server.port, "/", header.as_bytes()).0);
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "one client, whatever the forged entries"
    );
    // Another forwarded client has its own budget; so does the proxy itself.
    assert_eq!(
        get_with(server.port, "/", b"X-Forwarded-For: 198.51.100.8\r\n").0,
        200
    );
    assert_eq!(get(server.port, "/").0, 200);
}

fn garbage_forwarding_headers_never_cause_a_500(flavor: Flavor) {
    let server = start(flavor, &[]);
    for header in [
        &b"X-Forwarded-For: \xff\xfe garbage, ,,[::1\r\n"[..],
        b"Forwarded: for=\"[unclosed;;;==\r\n",
        b"X-Real-IP: not an ip\r\n",
        b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: ::::::\r\n",
    ] {
        let (status, _, body) = get_with(server.port, "/", header);
        assert_eq!(status, 200, "{}: {body}", String::from_utf8_lossy(header));
    }
    let long = format!("X-Forwarded-For: {}\r\n", "10.0.0.1, ".repeat(700));
    assert_eq!(get_with(server.port, "/", long.as_bytes()).0, 200);
}

fn an_invalid_rate_limit_is_a_clear_startup_error(flavor: Flavor) {
    let (success, stderr) = run_to_exit(flavor, &[("RATE_LIMIT", "lots")]);
    assert!(!success);
    assert!(
        stderr.contains("RATE_LIMIT") && stderr.contains("expected"),
        "{stderr}"
    );
}

const TOKEN: &str = "123456:SECRET-quickstart-token";

fn telegram_env(telegram: &FakeHttp) -> Vec<(&'static str, String)> {
    vec![
        ("TELEGRAM_BOT_TOKEN", format!("{TOKEN}\n")), // pasted with a newline
        ("TELEGRAM_CHAT_ID", "42".to_owned()),
        ("WATCHPOST_TELEGRAM_API_URL", telegram.url()),
        ("WATCHPOST_SERVICE", "quickstart".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ]
}

#[cfg(unix)]
fn a_handler_panic_alerts_once_and_serving_goes_on(flavor: Flavor) {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(flavor, &telegram_env(&telegram));

    let (status, head, body) = get(server.port, "/panic");
    assert_eq!(status, 500, "{body}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert!(
        telegram.wait_for(1, Duration::from_secs(30)),
        "no alert reached Telegram"
    );
    assert_eq!(get(server.port, "/").0, 200, "still serving");
    for _ in 0..50 {
        assert_eq!(get(server.port, "/panic").0, 500);
    }
    assert_eq!(get(server.port, "/").0, 200, "still serving");

    // SIGTERM flushes what is pending: after the exit, everything that was
    // going to be sent has been. 51 identical panics are one message: the
    // panic's (deduplicated), and no 5xx-rate incident for the same
    // requests, although 51 of 53 requests in a minute answered 500 (the
    // monitor rules ran every second during the two-second drain).
    assert!(server.terminate().success(), "exit 0");
    let requests = telegram.requests();
    let texts: Vec<String> = requests
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(requests.len(), 1, "one bug, one message: {texts:#?}");
    let sent = &requests[0];
    assert_eq!(sent.path, format!("/bot{TOKEN}/sendMessage"));
    let message = sent.json();
    assert_eq!(message["chat_id"], 42);
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("demo panic from GET /panic"), "{text}");
    assert!(text.contains("quickstart"), "{text}");

    let output = server.output();
    assert!(
        output.contains("panicked at"),
        "the default hook still prints"
    );
    assert!(!output.contains("SECRET-quickstart-token"), "{output}");
}

#[cfg(unix)]
fn a_telegram_429_is_waited_out_and_pending_alerts_are_flushed_at_exit(flavor: Flavor) {
    let telegram = FakeHttp::start(telegram_ok());
    telegram.push(telegram_error(
        429,
        "Too Many Requests: retry after 3",
        Some(serde_json::json!({"retry_after": 3})),
    ));
    let mut server = start(flavor, &telegram_env(&telegram));
    assert_eq!(get(server.port, "/panic").0, 500);
    assert!(telegram.wait_for(1, Duration::from_secs(30)));

    // Stop at once: the retry is due after the two-second drain, so only the
    // flush at exit can deliver it.
    assert!(server.terminate().success(), "exit 0");
    let requests = telegram.requests();
    assert_eq!(requests.len(), 2, "the 429, then the retry");
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_secs(3),
        "retried after {waited:?}, before retry_after"
    );
    assert_eq!(requests[0].body, requests[1].body);
    assert!(!server.output().contains("SECRET-quickstart-token"));
}

fn a_half_configured_telegram_is_a_clear_startup_error(flavor: Flavor) {
    let (success, stderr) = run_to_exit(flavor, &[("TELEGRAM_BOT_TOKEN", "123456:SECRET-half")]);
    assert!(!success);
    assert!(stderr.contains("TELEGRAM_CHAT_ID"), "{stderr}");
    assert!(!stderr.contains("SECRET-half"), "{stderr}");
}

#[cfg(unix)]
fn a_burst_of_errors_raises_exactly_one_error_rate_alert(flavor: Flavor) {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(flavor, &telegram_env(&telegram));
    for _ in 0..90 {
        let (status, _, body) = get(server.port, "/error");
        assert_eq!(
            (status, body.as_str()),
            (500, "demo error from GET /error\n")
        );
    }
    assert!(
        telegram.wait_for(1, Duration::from_secs(30)),
        "no error-rate alert reached Telegram"
    );
    // Probes are not counted: a 503 from /readyz is a signal, not an error.
    assert_eq!(get(server.port, "/livez").0, 200);

    assert!(server.terminate().success(), "exit 0");
    let requests = telegram.requests();
    assert_eq!(requests.len(), 1, "one incident, no other message");
    let text = requests[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("FIRING: HTTP 5xx rate 100%"), "{text}");
    let (errors, counted) = error_rate_counts(&text);
    assert!(
        errors == counted && (20..=90).contains(&errors),
        "only errors, 20 at least: {text}"
    );
    assert!(text.contains(&format!("GET /error ({errors})")), "{text}");
}

/// The "E of N requests answered 5xx" of an error-rate alert, as (E, N).
/// The monitor describes the window as it was when its rule fired (it runs
/// once a second): all of a burst if the burst ended between two runs,
/// part of it (20 requests at least) if a run came in the middle.
fn error_rate_counts(text: &str) -> (u64, u64) {
    let (before, _) = text
        .split_once(" requests answered 5xx")
        .unwrap_or_else(|| panic!("not an error-rate alert: {text}"));
    let counts = before.rsplit(['>', '\n']).next().unwrap();
    let (errors, counted) = counts.split_once(" of ").unwrap();
    (errors.parse().unwrap(), counted.parse().unwrap())
}

/// The HTTP monitor counts the quickstart's routes (a 405 from one of them
/// too), not the probes and not the paths no route matches: one error in
/// the 20 requests it needs at least (5%) fires the error-rate incident
/// only if nothing else was counted.
#[cfg(unix)]
fn the_monitor_counts_the_routes_not_the_probes_or_unknown_paths(flavor: Flavor) {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(flavor, &telegram_env(&telegram));
    assert_eq!(get(server.port, "/error").0, 500);
    for _ in 0..10 {
        for (path, status) in [
            ("/nope", 404),
            ("/readyz/", 404),
            ("/livez", 200),
            ("/readyz", 200),
            ("/healthz", 200),
            ("/readyz/nope", 404),
        ] {
            assert_eq!(get(server.port, path).0, status, "{path}");
        }
    }
    assert_eq!(request(server.port, "DELETE", "/error", b"").0, 405);
    for _ in 0..18 {
        assert_eq!(get(server.port, "/").0, 200);
    }
    assert!(
        telegram.wait_for(1, Duration::from_secs(30)),
        "no error-rate alert: more than 20 requests were counted"
    );

    assert!(server.terminate().success(), "exit 0");
    let texts: Vec<String> = telegram
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 1, "one incident, no other message: {texts:#?}");
    assert!(
        texts[0].contains("1 of 20 requests answered 5xx"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("GET /error (1)"), "{}", texts[0]);
}

fn readyz_postgres_follows_the_database(flavor: Flavor) {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("skipped: set DATABASE_URL");
        return;
    };
    let server = start(flavor, &[("DATABASE_URL", url)]);
    let (status, head, body) = get(server.port, "/readyz/postgres");
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert_eq!(get(server.port, "/readyz").0, 200);
}

fn readyz_postgres_is_503_when_the_database_is_unreachable(flavor: Flavor) {
    let closed = free_port();
    let url = format!("postgres://app:pw-SECRET@127.0.0.1:{closed}/app");
    let server = start(flavor, &[("DATABASE_URL", url)]);
    let (status, _, body) = get(server.port, "/readyz/postgres");
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(server.port, "/readyz").0, 503);
    assert_eq!(
        get(server.port, "/livez").0,
        200,
        "the process itself is fine"
    );
    assert!(
        !body.contains("pw-SECRET") && !body.contains(&closed.to_string()),
        "{body}"
    );
    assert!(
        !server.output().contains("pw-SECRET"),
        "{}",
        server.output()
    );
}

fn an_invalid_database_url_is_a_clear_startup_error(flavor: Flavor) {
    let (success, stderr) = run_to_exit(flavor, &[("DATABASE_URL", "mysql://nope")]);
    assert!(!success);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[cfg(unix)]
fn two_quickstarts_sharing_redis_send_one_message_for_the_same_panic(flavor: Flavor) {
    let Ok(redis) = std::env::var("REDIS_URL") else {
        eprintln!("skipped: set REDIS_URL");
        return;
    };
    let prefix = unique_prefix();
    let telegram = FakeHttp::start(telegram_ok());
    let mut envs = telegram_env(&telegram);
    envs.push(("REDIS_URL", redis));
    envs.push(("WATCHPOST_REDIS_PREFIX", prefix));
    let mut a = start(flavor, &envs);
    let mut b = start(flavor, &envs);

    assert_eq!(get(a.port, "/panic").0, 500);
    assert!(telegram.wait_for(1, Duration::from_secs(30)));
    assert_eq!(get(b.port, "/panic").0, 500);
    // Both flush at exit: whatever either was going to send is sent.
    assert!(a.terminate().success(), "exit 0");
    assert!(b.terminate().success(), "exit 0");
    let texts: Vec<String> = telegram
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 1, "one message for two replicas: {texts:#?}");
    assert!(
        texts[0].contains("demo panic from GET /panic"),
        "{}",
        texts[0]
    );
}

/// A key prefix of its own, so reruns within a window don't collide.
fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("watchpost-e2e-{}-{nanos}", std::process::id())
}

fn two_quickstarts_sharing_redis_let_a_client_through_five_times_in_total(flavor: Flavor) {
    let_a_client_through_five_times_in_total(flavor, flavor);
}

/// The axum and the actix-web quickstart keep their counts under the same
/// keys: one budget per client across a mixed fleet.
#[test]
fn an_axum_and_an_actix_quickstart_sharing_redis_let_a_client_through_five_times_in_total() {
    let_a_client_through_five_times_in_total(Flavor::Axum, Flavor::Actix);
}

/// Two quickstarts sharing one Redis at `RATE_LIMIT=5/min`, asked in turn.
fn let_a_client_through_five_times_in_total(a: Flavor, b: Flavor) {
    let Ok(redis) = std::env::var("REDIS_URL") else {
        eprintln!("skipped: set REDIS_URL");
        return;
    };
    let envs = [
        ("RATE_LIMIT", "5/min".to_owned()),
        ("REDIS_URL", redis),
        ("WATCHPOST_REDIS_PREFIX", unique_prefix()),
    ];
    let (a, b) = (start(a, &envs), start(b, &envs));
    let answers: Vec<(u16, String)> = (0..12)
        .map(|i| {
            let port = if i % 2 == 0 { a.port } else { b.port };
            let (status, head, _) = get(port, "/");
            (status, head)
        })
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "5 in total across both: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7);
    // The same headers as in memory, from either replica.
    for (status, head) in &answers {
        assert!(
            head.contains("ratelimit-policy: \"default\";q=5;w=60"),
            "{head}"
        );
        if *status == 429 {
            assert!(head.contains("retry-after: "), "{head}");
        }
    }
    for port in [a.port, b.port] {
        assert_eq!(get(port, "/livez").0, 200, "probes are never limited");
    }
}

#[cfg(unix)]
fn redis_down_still_alerts_and_says_so_once(flavor: Flavor) {
    let telegram = FakeHttp::start(telegram_ok());
    let mut envs = telegram_env(&telegram);
    envs.push((
        "REDIS_URL",
        format!("redis://:pw-SECRET@127.0.0.1:{}", free_port()),
    ));
    let mut server = start(flavor, &envs);
    assert_eq!(get(server.port, "/panic").0, 500);
    assert!(
        telegram.wait_for(2, Duration::from_secs(30)),
        "{:#?}\n{}",
        telegram_texts(&telegram),
        server.output()
    );
    for _ in 0..5 {
        let (status, head, _) = get(server.port, "/");
        assert_eq!(status, 200, "requests never fail because Redis is down");
        // Fail open: allowed, with a first request's headers.
        assert!(head.contains("ratelimit: \"default\";r=119;t=1"), "{head}");
    }
    assert!(server.terminate().success(), "exit 0");
    let texts: Vec<String> = telegram
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("demo panic from GET /panic")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("Shared state unavailable")),
        "{texts:#?}"
    );
    assert!(
        !server.output().contains("pw-SECRET"),
        "{}",
        server.output()
    );
}

/// The names of a process's threads.
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Nobody calls the probes: the checks run in the background, so the
/// upstream going away fires one incident, and coming back resolves it;
/// and watchpost runs on one thread of its own.
#[cfg(target_os = "linux")]
fn an_upstream_going_away_alerts_with_no_probe_and_resolves_on_one_thread(flavor: Flavor) {
    let telegram = FakeHttp::start(telegram_ok());
    let upstream = FakeHttp::start(Reply::text(200, "ok"));
    let addr = upstream.addr();
    let mut env = telegram_env(&telegram);
    env.push(("UPSTREAM_URL", upstream.url()));
    let mut server = start(flavor, &env);
    assert!(server.wait_for_output("watchpost is running: thread watchpost"));

    // Up: the first background runs reach it; nothing is sent.
    assert!(
        upstream.wait_for(1, Duration::from_secs(30)),
        "no check ran"
    );
    let ours: Vec<String> = threads_of(server.child.id())
        .into_iter()
        .filter(|name| name.starts_with("watchpost"))
        .collect();
    assert_eq!(ours, ["watchpost"], "one thread that watchpost started");

    // Gone: one firing message within 30 s, no probe request made.
    let went = Instant::now();
    drop(upstream);
    assert!(
        telegram.wait_for(1, Duration::from_secs(30)),
        "no alert within 30 s: {}",
        server.output()
    );
    let took = went.elapsed();
    let text = |i: usize| {
        telegram.requests()[i].json()["text"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        text(0).contains("FIRING: Health check upstream failing"),
        "{}",
        text(0)
    );

    // Back: one resolved message.
    let upstream = FakeHttp::start_on(addr, Reply::text(200, "ok"));
    assert!(
        telegram.wait_for(2, Duration::from_secs(30)),
        "no resolution within 30 s: {}",
        server.output()
    );
    assert!(
        text(1).contains("RESOLVED: Health check upstream failing"),
        "{}",
        text(1)
    );
    assert!(server.terminate().success(), "exit 0");
    assert_eq!(
        telegram.requests().len(),
        2,
        "firing and resolved, nothing else"
    );
    assert!(!upstream.requests().is_empty());
    println!("{flavor}: firing {took:?} after the upstream went away");
}

/// The Bot API refuses connections for a minute while a panic, a health
/// check flip and an `/error` burst happen: once it is back, every message
/// arrives, once, each firing before its resolution, within 30 s.
#[cfg(unix)]
fn a_telegram_outage_of_a_minute_loses_no_alert(flavor: Flavor) {
    let down = FakeHttp::start(telegram_ok());
    let bot = down.addr();
    let mut env = telegram_env(&down);
    drop(down); // the port now refuses connections
    let upstream = FakeHttp::start(Reply::text(200, "ok"));
    let upstream_addr = upstream.addr();
    env.push(("UPSTREAM_URL", upstream.url()));
    let mut server = start(flavor, &env);
    assert!(server.wait_for_output("watchpost is running"));
    let outage = Instant::now();
    assert_eq!(get(server.port, "/panic").0, 500);
    drop(upstream);
    for _ in 0..30 {
        assert_eq!(get(server.port, "/error").0, 500);
    }
    // The check fails (every 10 s, so within 20 s), then recovers.
    assert!(
        server.wait_for_output("health check failing"),
        "{}",
        server.output()
    );
    let upstream = FakeHttp::start_on(upstream_addr, Reply::text(200, "ok"));
    assert!(
        server.wait_for_output("health check passing again"),
        "{}",
        server.output()
    );
    std::thread::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed()));

    let telegram = FakeHttp::start_on(bot, telegram_ok());
    let back = Instant::now();
    assert!(
        telegram.wait_for(4, Duration::from_secs(30)),
        "{:#?}\n{}",
        telegram_texts(&telegram),
        server.output()
    );
    let took = back.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let texts = telegram_texts(&telegram);
    let position = |needle: &str, resolved: bool| {
        let found: Vec<usize> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| t.contains(needle) && t.contains("RESOLVED") == resolved)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{needle} (resolved: {resolved}) once: {texts:#?}"
        );
        found[0]
    };
    position("panic: demo panic from GET /panic", false);
    let errors = position("HTTP 5xx rate", false);
    let firing = position("Health check upstream failing", false);
    let resolved = position("Health check upstream failing", true);
    assert!(firing < resolved, "{texts:#?}");
    // The 5xx incident resolves a calm minute after the burst: its
    // resolution may already be among them, after its firing.
    let mut expected = 4;
    if texts
        .iter()
        .any(|t| t.contains("HTTP 5xx rate") && t.contains("RESOLVED"))
    {
        assert!(errors < position("HTTP 5xx rate", true), "{texts:#?}");
        expected = 5;
    }
    assert_eq!(
        texts.len(),
        expected,
        "nothing else, nothing twice: {texts:#?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("could not be delivered")),
        "nothing was lost: {texts:#?}"
    );
    assert!(server.terminate().success(), "exit 0");
    assert!(!server.output().contains(TOKEN), "the token in the output");
    drop(upstream);
    println!("{flavor}: every alert {took:?} after the Bot API came back");
}
