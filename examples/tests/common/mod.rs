//! What the end-to-end tests of the examples share: start an example's
//! binary with a clean environment, talk HTTP/1.1 to it over 127.0.0.1,
//! watch its output, stop it. Bounds on waits only catch hangs.

#![allow(dead_code)] // each test file uses its own part
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any wait may take before the test calls it a hang.
pub(crate) const HANG: Duration = Duration::from_secs(60);

/// Variables a developer's shell might have set that change what an
/// example does: never inherited.
const CLEARED: &[&str] = &[
    "PORT",
    "RATE_LIMIT",
    "UPSTREAM_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "WORKER_PERIOD_MS",
    "WORKER_BREAK",
    "DRAIN_SECONDS",
    "SLOW_SECONDS",
    "SLACK_WEBHOOK_URL",
    "DISCORD_WEBHOOK_URL",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
    "WATCHPOST_TELEGRAM_API_URL",
    "WATCHPOST_TELEGRAM_THREAD_ID",
    "WATCHPOST_WEBHOOK_URL",
    "WATCHPOST_WEBHOOK_FORMAT",
    "WATCHPOST_SENTRY_DSN",
    "WATCHPOST_SERVICE",
    "WATCHPOST_ENV",
    "WATCHPOST_VERSION",
    "WATCHPOST_HOST",
];

/// A command for `bin` with the variables above cleared, then `envs` set.
pub(crate) fn command(bin: &str, envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(bin);
    for var in CLEARED {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `bin` to its exit (killed and failed after [`HANG`]): the status
/// and everything it printed, stdout then stderr.
pub(crate) fn run_to_exit(bin: &str, envs: &[(&str, String)]) -> (ExitStatus, String) {
    let mut child = command(bin, envs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    (status, output)
}

/// Reads a pipe to its end on a thread of its own (so a full pipe never
/// blocks the child).
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// An example serving on 127.0.0.1; killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    /// Everything the program printed, stdout and stderr.
    output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `bin` on a free port and waits for its first line, which
    /// must be `listening on http://127.0.0.1:PORT`.
    pub(crate) fn start(bin: &str, envs: &[(&str, String)]) -> Server {
        let port = free_port();
        let mut child = command(bin, envs)
            .env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
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

    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle` (false after [`HANG`]).
    pub(crate) fn wait_for_output(&self, needle: &str) -> bool {
        wait_until(|| self.output().contains(needle))
    }

    /// Sends SIGTERM.
    #[cfg(unix)]
    pub(crate) fn sigterm(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// SIGTERM, then the exit status.
    #[cfg(unix)]
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// Waits for the exit (fails after [`HANG`]).
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
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

/// Polls `condition` every 20 ms until it holds (false after [`HANG`]).
pub(crate) fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + HANG;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A minimal HTTP/1.1 GET: (status, lowercase head, body).
pub(crate) fn get(port: u16, path: &str) -> (u16, String, String) {
    get_with(port, path, b"")
}

/// A GET with extra raw header lines (each ending in CRLF).
pub(crate) fn get_with(port: u16, path: &str, extra_headers: &[u8]) -> (u16, String, String) {
    request(port, "GET", path, extra_headers)
}

/// A minimal HTTP/1.1 request without a body, read until the server closes
/// the connection: (status, lowercase head, body).
pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    extra_headers: &[u8],
) -> (u16, String, String) {
    let (status, head, body) = request_raw(port, method, path, extra_headers);
    (status, head.to_ascii_lowercase(), body)
}

/// [`request`], the head as received.
pub(crate) fn request_raw(
    port: u16,
    method: &str,
    path: &str,
    extra_headers: &[u8],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
            .into_bytes();
    request.extend_from_slice(extra_headers);
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// The `text` of every message a fake Telegram Bot API received.
pub(crate) fn telegram_texts(telegram: &watchpost_testkit::fake_http::FakeHttp) -> Vec<String> {
    telegram
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub(crate) const TOKEN: &str = "123456:SECRET-examples-token";

/// Alerts to a fake Telegram, from service `service`.
pub(crate) fn telegram_env(
    telegram: &watchpost_testkit::fake_http::FakeHttp,
    service: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("TELEGRAM_BOT_TOKEN", TOKEN.to_owned()),
        ("TELEGRAM_CHAT_ID", "42".to_owned()),
        ("WATCHPOST_TELEGRAM_API_URL", telegram.url()),
        ("WATCHPOST_SERVICE", service.to_owned()),
    ]
}
