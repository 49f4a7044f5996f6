//! Drives the quickstart binary from outside, as a user would: probes over
//! real TCP, a dead upstream, and SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The quickstart example binary, which `cargo test` builds next to the tests.
fn quickstart_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run `cargo test --workspace` (which builds the examples)",
        bin.display()
    );
    bin
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
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // It prints the URLs it serves once listening.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(
        first.trim(),
        format!("listening on http://127.0.0.1:{port}")
    );
    std::thread::spawn(move || for _ in stdout.lines() {});
    Server { child, port }
}

/// A minimal HTTP/1.1 GET: (status, lowercase headers, body).
fn get(port: u16, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
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
    let output = Command::new(quickstart_bin())
        .env("PORT", free_port().to_string())
        .env("UPSTREAM_URL", "not a url")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UPSTREAM_URL"), "{stderr}");
}
