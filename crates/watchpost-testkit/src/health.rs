//! The health-probe conformance suite.

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use watchpost::checks::fn_check;
use watchpost::health::{CheckResult, CheckSpec, Details, HealthChecks, ProbeRequest};

use crate::{Harness, TestRequest, TestResponse};

/// Error text of the failing check: it names an internal host, and must reach
/// a response body only when the details policy allows.
pub const SECRET_OUTPUT: &str = "connect to db.internal:5432 refused";
/// Token of the `WithToken` fixture.
pub const TOKEN: &str = "t0ken-for-tests";

/// The configurations the suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixture {
    /// Every check passes.
    Passing,
    /// Liveness passes; readiness has a failing critical check (`db`), a
    /// failing non-critical one (`cache`) and a passing one (`queue`).
    Mixed,
    /// `Mixed` with `Details::WithToken(TOKEN)`.
    Token,
    /// `Mixed` with `Details::Always`.
    Always,
    /// `Passing`, shutting down.
    ShuttingDown,
    /// `Mixed` on the paths `/health/live`, `/health/ready`, `/health/all`.
    CustomPaths,
}

impl Fixture {
    /// Every fixture.
    pub const ALL: [Fixture; 6] = [
        Fixture::Passing,
        Fixture::Mixed,
        Fixture::Token,
        Fixture::Always,
        Fixture::ShuttingDown,
        Fixture::CustomPaths,
    ];

    /// Builds the fixture's health checks. Results are cached for a minute, so
    /// an adapter's answer and the core's reference answer share one reading.
    pub fn build(self) -> HealthChecks {
        let pass = || fn_check(|| async { CheckResult::pass() });
        let mut builder = HealthChecks::builder()
            .cache_for(Duration::from_secs(60))
            .liveness("event loop", pass())
            .register(CheckSpec::new("disk", pass()).liveness().readiness());
        builder = match self {
            Fixture::Passing | Fixture::ShuttingDown => builder.readiness("db", pass()),
            _ => builder
                .readiness("db", fn_check(|| async { Err::<(), _>(SECRET_OUTPUT) }))
                .register(
                    CheckSpec::new(
                        "cache",
                        fn_check(|| async { CheckResult::fail("cache miss storm") }),
                    )
                    .readiness()
                    .non_critical(),
                )
                .readiness(
                    "queue",
                    fn_check(|| async { CheckResult::pass().observed(3, "jobs") }),
                ),
        };
        builder = match self {
            Fixture::Token => builder.details(Details::with_token(TOKEN)),
            Fixture::Always => builder.details(Details::Always),
            Fixture::CustomPaths => builder.paths("/health/live", "/health/ready", "/health/all"),
            _ => builder,
        };
        let health = builder.build().expect("fixture configuration is valid");
        if self == Fixture::ShuttingDown {
            health.shutting_down();
        }
        health
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct Case {
    /// The configuration.
    pub fixture: Fixture,
    /// The request method.
    pub method: &'static str,
    /// Path and query.
    pub uri: &'static str,
    /// Extra request headers.
    pub headers: &'static [(&'static str, &'static str)],
    /// Expected status.
    pub status: u16,
    /// JSON pointers and what must be there.
    pub json: Vec<(&'static str, Expect)>,
}

/// What a JSON pointer must find.
#[derive(Debug)]
pub enum Expect {
    /// This value.
    Eq(Value),
    /// Any value.
    Present,
    /// Nothing.
    Absent,
}

fn case(fixture: Fixture, method: &'static str, uri: &'static str, status: u16) -> Case {
    Case {
        fixture,
        method,
        uri,
        headers: &[],
        status,
        json: Vec::new(),
    }
}

impl Case {
    fn json(mut self, pointer: &'static str, value: Value) -> Self {
        self.json.push((pointer, Expect::Eq(value)));
        self
    }
    fn present(mut self, pointer: &'static str) -> Self {
        self.json.push((pointer, Expect::Present));
        self
    }
    fn absent(mut self, pointer: &'static str) -> Self {
        self.json.push((pointer, Expect::Absent));
        self
    }
    fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }
}

/// The table of requests and expected answers.
pub fn cases() -> Vec<Case> {
    use Fixture::*;
    let hs = "/checks/db/0/status";
    vec![
        case(Passing, "GET", "/livez", 200).json("/status", json!("pass")),
        case(Passing, "GET", "/readyz", 200)
            .json("/status", json!("pass"))
            .json("/checks/disk/0/status", json!("pass"))
            .absent("/checks/event loop")
            .absent("/checks/disk/0/time"),
        case(Passing, "GET", "/healthz", 200).json("/checks/event loop/0/status", json!("pass")),
        case(Passing, "GET", "/healthz?verbose", 200)
            .json("/checks/db/0/status", json!("pass"))
            .json("/checks/db/0/componentType", json!("component"))
            .present("/checks/db/0/time")
            .present("/checks/db/0/durationMs")
            .absent("/checks/db/0/critical")
            .absent("/checks/db/0/output"),
        case(Passing, "GET", "/healthz?verbose=0", 200).absent("/checks/db/0/time"),
        // A dependency outage never fails liveness.
        case(Mixed, "GET", "/livez", 200).json("/status", json!("pass")),
        case(Mixed, "GET", "/readyz", 503)
            .json("/status", json!("fail"))
            .json(hs, json!("fail"))
            .json("/checks/cache/0/status", json!("warn"))
            .json("/checks/queue/0/status", json!("pass"))
            .absent("/checks/db/0/output"),
        case(Mixed, "GET", "/readyz?verbose", 503)
            .json("/checks/queue/0/observedValue", json!(3))
            .json("/checks/queue/0/observedUnit", json!("jobs"))
            .json("/checks/cache/0/critical", json!(false))
            .absent("/checks/db/0/output"),
        case(Mixed, "GET", "/readyz?exclude=db", 200)
            .json("/status", json!("warn"))
            .absent("/checks/db"),
        case(Mixed, "GET", "/readyz?exclude=db&exclude=cache", 200).json("/status", json!("pass")),
        case(Mixed, "GET", "/readyz?exclude=nonexistent", 503),
        case(Mixed, "GET", "/healthz", 503).json("/checks/event loop/0/status", json!("pass")),
        case(Mixed, "GET", "/readyz/db", 503)
            .json(hs, json!("fail"))
            .absent("/checks/queue"),
        case(Mixed, "GET", "/readyz/queue", 200).json("/checks/queue/0/status", json!("pass")),
        case(Mixed, "GET", "/readyz/cache", 200).json("/status", json!("warn")),
        case(Mixed, "GET", "/livez/event%20loop", 200)
            .json("/checks/event loop/0/status", json!("pass")),
        case(Mixed, "GET", "/healthz/db", 503),
        // A check outside the probe, or no check at all: 404.
        case(Mixed, "GET", "/livez/db", 404).json("/error", json!("not found")),
        case(Mixed, "GET", "/readyz/nope", 404),
        case(Mixed, "HEAD", "/readyz", 503),
        case(Mixed, "HEAD", "/livez", 200),
        case(Mixed, "POST", "/readyz", 405).json("/error", json!("method not allowed")),
        case(Mixed, "DELETE", "/livez/disk", 405),
        case(Mixed, "PUT", "/readyz/nope", 405),
        // The details policy.
        case(Token, "GET", "/readyz", 503).absent("/checks/db/0/output"),
        case(Token, "GET", "/readyz", 503)
            .headers(&[("authorization", "Bearer t0ken-for-tests")])
            .json("/checks/db/0/output", json!(SECRET_OUTPUT))
            .json("/checks/cache/0/output", json!("cache miss storm"))
            .absent("/checks/queue/0/output"),
        case(Token, "GET", "/readyz?token=t0ken-for-tests", 503)
            .json("/checks/db/0/output", json!(SECRET_OUTPUT)),
        case(Token, "GET", "/readyz?token=t0ken-for-test", 503).absent("/checks/db/0/output"),
        case(Token, "GET", "/readyz", 503)
            .headers(&[("authorization", "Bearer wrong")])
            .absent("/checks/db/0/output"),
        case(Always, "GET", "/readyz/db", 503).json("/checks/db/0/output", json!(SECRET_OUTPUT)),
        // Draining: readiness fails at once, liveness stays up.
        case(ShuttingDown, "GET", "/readyz", 503)
            .json("/status", json!("fail"))
            .json("/output", json!("shutting down"))
            .absent("/checks"),
        case(ShuttingDown, "GET", "/livez", 200),
        case(ShuttingDown, "GET", "/healthz", 200),
        case(ShuttingDown, "GET", "/readyz/db", 200),
        case(CustomPaths, "GET", "/health/ready", 503).json(hs, json!("fail")),
        case(CustomPaths, "GET", "/health/live", 200),
        case(CustomPaths, "GET", "/health/all/db", 503),
        case(CustomPaths, "POST", "/health/live", 405),
    ]
}

/// Runs every case against the adapter that `make` builds for each fixture.
///
/// For every case it checks the table's expectations, that every response
/// carries `Cache-Control: no-store` (and `Allow` on 405, an empty body on
/// `HEAD`), and that the adapter's status, headers and body are exactly the
/// core's.
pub async fn run<F, Fut, H>(mut make: F)
where
    F: FnMut(HealthChecks) -> Fut,
    Fut: Future<Output = H>,
    H: Harness,
{
    let cases = cases();
    for fixture in Fixture::ALL {
        let health = fixture.build();
        let harness = make(health.clone()).await;
        for case in cases.iter().filter(|c| c.fixture == fixture) {
            let req = TestRequest {
                method: case.method,
                uri: case.uri.to_owned(),
                headers: case
                    .headers
                    .iter()
                    .map(|(n, v)| (*n, v.as_bytes().to_vec()))
                    .collect(),
                peer: None,
            };
            let got = harness.call(req).await;
            let reference = reference(&health, case).await;
            check_case(case, &got, &reference);
        }
    }
}

/// The core's answer to the case's request.
async fn reference(health: &HealthChecks, case: &Case) -> TestResponse {
    let (path, query) = match case.uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (case.uri, None),
    };
    let auth = case
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_bytes());
    let res = health
        .respond(
            ProbeRequest::new(case.method, path)
                .query(query)
                .authorization(auth),
        )
        .await;
    TestResponse {
        status: res.status(),
        headers: res
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        body: res.body().to_vec(),
    }
}

fn check_case(case: &Case, got: &TestResponse, reference: &TestResponse) {
    let body_text = String::from_utf8_lossy(&got.body);
    let ctx = format!(
        "{} {} ({:?}) -> {} {body_text}",
        case.method, case.uri, case.fixture, got.status
    );
    assert_eq!(got.status, case.status, "status: {ctx}");
    assert_eq!(
        got.header("cache-control"),
        Some("no-store"),
        "cache-control: {ctx}"
    );
    if case.status == 405 {
        assert_eq!(got.header("allow"), Some("GET, HEAD"), "allow: {ctx}");
    }
    if case.method == "HEAD" {
        assert!(got.body.is_empty(), "HEAD body: {ctx}");
    } else {
        let expected_type = if matches!(case.status, 200 | 503) {
            "application/health+json"
        } else {
            "application/json"
        };
        assert_eq!(
            got.header("content-type"),
            Some(expected_type),
            "content-type: {ctx}"
        );
        let body = got.json();
        for (pointer, expected) in &case.json {
            let found = body.pointer(pointer);
            match expected {
                Expect::Eq(value) => assert_eq!(found, Some(value), "{pointer}: {ctx}"),
                Expect::Present => assert!(found.is_some(), "{pointer} missing: {ctx}"),
                Expect::Absent => assert_eq!(found, None, "{pointer} present: {ctx}"),
            }
        }
        let bearer = format!("Bearer {TOKEN}");
        let query = format!("token={TOKEN}");
        let may_show = case.fixture == Fixture::Always
            || case
                .headers
                .iter()
                .any(|&(n, v)| n == "authorization" && v == bearer)
            || case.uri.split(['?', '&']).any(|pair| pair == query);
        if !may_show {
            assert!(
                !body_text.contains("db.internal"),
                "error text leaked: {ctx}"
            );
        }
    }
    // Parity: exactly the core's answer.
    assert_eq!(got.status, reference.status, "parity status: {ctx}");
    assert_eq!(got.body, reference.body, "parity body: {ctx}");
    for (name, value) in &reference.headers {
        assert_eq!(
            got.header(name),
            Some(value.as_str()),
            "parity header {name}: {ctx}"
        );
    }
}
