//! Drives the quickstart binary from outside, as a user would: probes over
//! real TCP, a dead upstream, rate limits, panics reported to a fake
//! Telegram Bot API, and SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchpost_testkit::fake_http::{telegram_error, telegram_ok, FakeHttp};

/// The quickstart program (built as a binary of this package, so cargo
/// rebuilds it before these tests).
fn quickstart_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quickstart-e2e"))
}

/// Runs the program expecting it to exit (a startup error); kills it and
/// fails if it is still running after a generous bound.
fn run_to_exit(envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(quickstart_bin());
    cmd.env("PORT", free_port().to_string())
        .env_remove("UPSTREAM_URL")
        .env_remove("RATE_LIMIT")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for var in ALERT_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running: a startup error should have stopped it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stderr)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    port: u16,
    /// Everything the program printed, stdout and stderr.
    output: Arc<Mutex<String>>,
}

impl Server {
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// SIGTERM, then waits for the exit (a generous bound: only catches a
    /// hang); returns whether it exited 0.
    #[cfg(unix)]
    fn terminate(&mut self) -> bool {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(envs: &[(&str, String)]) -> Server {
    let port = free_port();
    let mut cmd = Command::new(quickstart_bin());
    cmd.env("PORT", port.to_string())
        .env_remove("UPSTREAM_URL")
        .env_remove("RATE_LIMIT")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in ALERT_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    // It prints the URLs it serves once listening.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(
        first.trim(),
        format!("listening on http://127.0.0.1:{port}")
    );
    output.lock().unwrap().push_str(&first);
    let collect = |stream: Box<dyn Read + Send>, output: Arc<Mutex<String>>| {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let mut output = output.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
        })
    };
    collect(Box::new(stdout), output.clone());
    collect(Box::new(child.stderr.take().unwrap()), output.clone());
    Server {
        child,
        port,
        output,
    }
}

/// The alert variables a developer's shell might have set: never inherited.
const ALERT_VARS: [&str; 9] = [
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
    "WATCHPOST_TELEGRAM_API_URL",
    "WATCHPOST_TELEGRAM_THREAD_ID",
    "WATCHPOST_WEBHOOK_URL",
    "WATCHPOST_WEBHOOK_FORMAT",
    "WATCHPOST_SENTRY_DSN",
    "WATCHPOST_SERVICE",
    "WATCHPOST_ENV",
];

/// A minimal HTTP/1.1 GET: (status, lowercase headers, body).
fn get(port: u16, path: &str) -> (u16, String, String) {
    get_with(port, path, b"")
}

/// A GET with extra raw header lines (each ending in CRLF).
fn get_with(port: u16, path: &str, extra_headers: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n").into_bytes();
    request.extend_from_slice(extra_headers);
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn probes_answer_and_the_greeting_works() {
    let server = start(&[]);
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

#[test]
fn a_dead_upstream_fails_readiness_only_and_stays_private() {
    let dead = free_port(); // nothing listens there any more
    let server = start(&[("UPSTREAM_URL", format!("http://127.0.0.1:{dead}/health"))]);
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
#[test]
fn sigterm_fails_readiness_then_exits_cleanly() {
    let mut server = start(&[]);
    assert_eq!(get(server.port, "/readyz").0, 200);
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

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

#[test]
fn an_invalid_upstream_url_is_a_clear_startup_error() {
    let (success, stderr) = run_to_exit(&[("UPSTREAM_URL", "not a url")]);
    assert!(!success);
    assert!(stderr.contains("UPSTREAM_URL"), "{stderr}");
}

#[test]
fn rate_limit_allows_five_of_ten_and_spares_the_probes() {
    let server = start(&[("RATE_LIMIT", "5/min".to_owned())]);
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

#[test]
fn behind_the_local_proxy_clients_are_their_forwarded_address() {
    let server = start(&[("RATE_LIMIT", "2/min".to_owned())]);
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

#[test]
fn garbage_forwarding_headers_never_cause_a_500() {
    let server = start(&[]);
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

#[test]
fn an_invalid_rate_limit_is_a_clear_startup_error() {
    let (success, stderr) = run_to_exit(&[("RATE_LIMIT", "lots")]);
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
#[test]
fn a_handler_panic_alerts_once_and_serving_goes_on() {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(&telegram_env(&telegram));

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
    // going to be sent has been. 51 identical panics are one panic message;
    // 51 failures out of 53 requests in a minute are also one 5xx-rate
    // incident (the monitor rules run every second, the drain lasts two).
    assert!(server.terminate(), "exit 0");
    let requests = telegram.requests();
    let texts: Vec<String> = requests
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(requests.len(), 2, "{texts:#?}");
    assert!(texts[1].contains("HTTP 5xx rate 96%"), "{}", texts[1]);
    assert!(texts[1].contains("GET /panic (51)"), "{}", texts[1]);
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
#[test]
fn a_telegram_429_is_waited_out_and_pending_alerts_are_flushed_at_exit() {
    let telegram = FakeHttp::start(telegram_ok());
    telegram.push(telegram_error(
        429,
        "Too Many Requests: retry after 3",
        Some(serde_json::json!({"retry_after": 3})),
    ));
    let mut server = start(&telegram_env(&telegram));
    assert_eq!(get(server.port, "/panic").0, 500);
    assert!(telegram.wait_for(1, Duration::from_secs(30)));

    // Stop at once: the retry is due after the two-second drain, so only the
    // flush at exit can deliver it.
    assert!(server.terminate(), "exit 0");
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

#[test]
fn a_half_configured_telegram_is_a_clear_startup_error() {
    let (success, stderr) = run_to_exit(&[("TELEGRAM_BOT_TOKEN", "123456:SECRET-half")]);
    assert!(!success);
    assert!(stderr.contains("TELEGRAM_CHAT_ID"), "{stderr}");
    assert!(!stderr.contains("SECRET-half"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_burst_of_errors_raises_exactly_one_error_rate_alert() {
    let telegram = FakeHttp::start(telegram_ok());
    let mut server = start(&telegram_env(&telegram));
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

    assert!(server.terminate(), "exit 0");
    let requests = telegram.requests();
    assert_eq!(requests.len(), 1, "one incident, no other message");
    let text = requests[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("HTTP 5xx rate 100%"), "{text}");
    assert!(text.contains("90 of 90 requests answered 5xx"), "{text}");
    assert!(text.contains("GET /error (90)"), "{text}");
    assert!(text.contains("FIRING: HTTP 5xx rate"), "{text}");
}

#[test]
fn readyz_postgres_follows_the_database() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("skipped: set DATABASE_URL");
        return;
    };
    let server = start(&[("DATABASE_URL", url)]);
    let (status, head, body) = get(server.port, "/readyz/postgres");
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert_eq!(get(server.port, "/readyz").0, 200);
}

#[test]
fn readyz_postgres_is_503_when_the_database_is_unreachable() {
    let closed = free_port();
    let url = format!("postgres://app:pw-SECRET@127.0.0.1:{closed}/app");
    let server = start(&[("DATABASE_URL", url)]);
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

#[test]
fn an_invalid_database_url_is_a_clear_startup_error() {
    let (success, stderr) = run_to_exit(&[("DATABASE_URL", "mysql://nope")]);
    assert!(!success);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn two_quickstarts_sharing_redis_send_one_message_for_the_same_panic() {
    let Ok(redis) = std::env::var("REDIS_URL") else {
        eprintln!("skipped: set REDIS_URL");
        return;
    };
    let prefix = unique_prefix();
    let telegram = FakeHttp::start(telegram_ok());
    let mut envs = telegram_env(&telegram);
    envs.push(("REDIS_URL", redis));
    envs.push(("WATCHPOST_REDIS_PREFIX", prefix));
    let mut a = start(&envs);
    let mut b = start(&envs);

    assert_eq!(get(a.port, "/panic").0, 500);
    assert!(telegram.wait_for(1, Duration::from_secs(30)));
    assert_eq!(get(b.port, "/panic").0, 500);
    // Both flush at exit: whatever either was going to send is sent.
    assert!(a.terminate(), "exit 0");
    assert!(b.terminate(), "exit 0");
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

#[test]
fn two_quickstarts_sharing_redis_let_a_client_through_five_times_in_total() {
    let Ok(redis) = std::env::var("REDIS_URL") else {
        eprintln!("skipped: set REDIS_URL");
        return;
    };
    let envs = [
        ("RATE_LIMIT", "5/min".to_owned()),
        ("REDIS_URL", redis),
        ("WATCHPOST_REDIS_PREFIX", unique_prefix()),
    ];
    let (a, b) = (start(&envs), start(&envs));
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
#[test]
fn redis_down_still_alerts_and_says_so_once() {
    let telegram = FakeHttp::start(telegram_ok());
    let mut envs = telegram_env(&telegram);
    envs.push((
        "REDIS_URL",
        format!("redis://:pw-SECRET@127.0.0.1:{}", free_port()),
    ));
    let mut server = start(&envs);
    assert_eq!(get(server.port, "/panic").0, 500);
    assert!(telegram.wait_for(2, Duration::from_secs(30)));
    for _ in 0..5 {
        let (status, head, _) = get(server.port, "/");
        assert_eq!(status, 200, "requests never fail because Redis is down");
        // Fail open: allowed, with a first request's headers.
        assert!(head.contains("ratelimit: \"default\";r=119;t=1"), "{head}");
    }
    assert!(server.terminate(), "exit 0");
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
