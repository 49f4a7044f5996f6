//! Drives the hyper_tower example from outside: probes, rate limits, a
//! panicking handler reported to a fake Telegram Bot API, the error-rate
//! incident with route names, and SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

mod common;

use common::{get, telegram_env, telegram_texts, Server, HANG, TOKEN};
use watchpost_testkit::fake_http::{telegram_ok, FakeHttp};

const BIN: &str = env!("CARGO_BIN_EXE_hyper-tower-e2e");

fn start(envs: &[(&str, String)]) -> Server {
    Server::start(BIN, envs)
}

#[test]
fn probes_answer_and_the_greeting_works() {
    let server = start(&[]);
    let (status, head, body) = get(server.port, "/");
    assert_eq!((status, body.as_str()), (200, "Hello from watchpost!\n"));
    assert!(head.contains("content-type: text/plain"), "{head}");
    for path in ["/livez", "/readyz", "/healthz", "/readyz?verbose"] {
        let (status, head, body) = get(server.port, path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(head.contains("cache-control: no-store"), "{path}: {head}");
        assert!(
            head.contains("content-type: application/health+json"),
            "{path}: {head}"
        );
        assert!(body.contains(r#""status":"pass""#), "{path}: {body}");
    }
    assert_eq!(get(server.port, "/nope").0, 404);
}

#[test]
fn over_the_quota_clients_get_429_with_retry_after_and_probes_are_spared() {
    let server = start(&[("RATE_LIMIT", "5/min".to_owned())]);
    let answers: Vec<(u16, String)> = (0..10)
        .map(|_| {
            let (status, head, _) = get(server.port, "/");
            (status, head)
        })
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429, 429, 429]);
    for (status, head) in &answers {
        assert!(
            head.contains("ratelimit-policy: \"default\";q=5;w=60"),
            "{head}"
        );
        if *status == 429 {
            let retry = head
                .lines()
                .find_map(|l| l.strip_prefix("retry-after: "))
                .expect("429 carries Retry-After");
            assert!(retry.trim().parse::<u64>().unwrap() >= 1, "{head}");
            assert!(head.contains("x-ratelimit-remaining: 0"), "{head}");
        }
    }
    for path in ["/livez", "/readyz", "/healthz"] {
        for _ in 0..10 {
            assert_eq!(get(server.port, path).0, 200, "{path} is never limited");
        }
    }
}

#[cfg(unix)]
#[test]
fn a_handler_panic_answers_500_alerts_once_and_serving_goes_on() {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(&telegram_env(&telegram, "hyper-tower"));

    let (status, head, body) = get(server.port, "/panic");
    assert_eq!(status, 500, "{body}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert!(
        !body.contains("demo panic"),
        "the panic stays private: {body}"
    );
    assert!(telegram.wait_for(1, HANG), "no alert reached Telegram");
    assert_eq!(get(server.port, "/").0, 200, "still serving");
    for _ in 0..5 {
        assert_eq!(get(server.port, "/panic").0, 500);
    }
    assert_eq!(get(server.port, "/").0, 200, "still serving");

    // The exit flushes what is pending: six identical panics are one
    // message (and 6 failures in 8 requests are under the monitor's
    // 20-request minimum: no error-rate incident).
    assert!(server.terminate().success(), "exit 0");
    let texts = telegram_texts(&telegram);
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(
        texts[0].contains("demo panic from GET /panic"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("hyper-tower"), "{}", texts[0]);
    assert_eq!(
        telegram.requests()[0].path,
        format!("/bot{TOKEN}/sendMessage")
    );
    let output = server.output();
    assert!(
        output.contains("panicked at"),
        "the default hook still prints"
    );
    assert!(!output.contains("SECRET-examples-token"), "{output}");
}

#[cfg(unix)]
#[test]
fn a_burst_of_errors_raises_one_incident_naming_the_route() {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(&telegram_env(&telegram, "hyper-tower"));
    for _ in 0..30 {
        let (status, _, body) = get(server.port, "/error");
        assert_eq!(
            (status, body.as_str()),
            (500, "demo error from GET /error\n")
        );
    }
    assert!(telegram.wait_for(1, HANG), "no error-rate alert");
    // Probes are outside the monitor, and never counted.
    assert_eq!(get(server.port, "/readyz").0, 200);

    assert!(server.terminate().success(), "exit 0");
    let texts = telegram_texts(&telegram);
    assert_eq!(texts.len(), 1, "one incident, no other message: {texts:#?}");
    assert!(
        texts[0].contains("FIRING: HTTP 5xx rate 100%"),
        "{}",
        texts[0]
    );
    // The route comes from the example's `RoutePattern`, not the raw path.
    assert!(texts[0].contains("GET /error (30)"), "{}", texts[0]);
}

#[cfg(unix)]
#[test]
fn sigterm_fails_readiness_then_exits_cleanly() {
    let mut server = start(&[]);
    assert_eq!(get(server.port, "/readyz").0, 200);
    server.sigterm();
    // During the drain: readiness 503, liveness and the app 200.
    assert!(common::wait_until(|| get(server.port, "/readyz").0 == 503));
    let (_, _, body) = get(server.port, "/readyz");
    assert!(body.contains("shutting down"), "{body}");
    assert_eq!(get(server.port, "/livez").0, 200);
    assert!(server.wait_exit().success(), "exit 0");
    assert!(server.output().contains("shut down cleanly"));
}

#[test]
fn an_invalid_rate_limit_is_a_clear_startup_error() {
    let (status, output) = common::run_to_exit(BIN, &[("RATE_LIMIT", "lots".to_owned())]);
    assert!(!status.success());
    assert!(output.contains("RATE_LIMIT"), "{output}");
}
