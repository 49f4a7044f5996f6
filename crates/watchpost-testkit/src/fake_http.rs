//! A scriptable fake HTTP server on 127.0.0.1, standing in for the
//! Telegram Bot API, Slack, Discord or any webhook receiver.
//!
//! It runs on its own thread and runtime, so sync tests, async tests and
//! child processes can all use it. It answers each request with the next
//! scripted [`Reply`] (then the default one), records every request, and can
//! delay or drop a reply to play a slow or broken API.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `POST`, `GET`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When the request arrived.
    pub at: Instant,
}

impl Recorded {
    /// The body parsed as JSON (`Null` if it isn't).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// Wait this long before answering (to play a slow API).
    pub delay: Duration,
    /// Close the connection without answering.
    pub hang_up: bool,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
            hang_up: false,
        }
    }

    /// A plain-text reply.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.to_owned(),
            delay: Duration::ZERO,
            hang_up: false,
        }
    }

    /// Closes the connection without a reply.
    pub fn hang_up() -> Self {
        Self {
            hang_up: true,
            ..Self::text(500, "")
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Answers after `delay`.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Telegram's answer to a successful `sendMessage`.
pub fn telegram_ok() -> Reply {
    Reply::json(
        200,
        serde_json::json!({
            "ok": true,
            "result": {"message_id": 1, "date": 1_700_000_000, "chat": {"id": 42, "type": "private"}, "text": "…"}
        }),
    )
}

/// A Telegram error body, as the Bot API sends it:
/// `{"ok":false,"error_code":…,"description":…,"parameters":…}`.
pub fn telegram_error(
    code: u16,
    description: &str,
    parameters: Option<serde_json::Value>,
) -> Reply {
    let mut body = serde_json::json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    Reply::json(code, body)
}

/// Sentry's (and GlitchTip's) answer to an accepted envelope:
/// `{"id": "<event id>"}`. The id is a fixed one; clients don't check it.
pub fn sentry_ok() -> Reply {
    Reply::json(
        200,
        serde_json::json!({"id": "fc6d8c0c43fc4630ad850ee518f1b9d0"}),
    )
}

/// A Sentry error answer, as Relay sends it: `{"detail": ...}` with the
/// status, plus `X-Sentry-Rate-Limits` when `rate_limits` is given (the
/// header Sentry puts on 429s, and sometimes on accepted envelopes).
pub fn sentry_error(status: u16, detail: &str, rate_limits: Option<&str>) -> Reply {
    let reply = Reply::json(status, serde_json::json!({"detail": detail}));
    match rate_limits {
        Some(limits) => reply.header("x-sentry-rate-limits", limits),
        None => reply,
    }
}

/// The `text` of every Bot API request `server` received, in order.
pub fn telegram_texts(server: &FakeHttp) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A port on 127.0.0.1 that nothing listens on (connections are refused).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[derive(Debug)]
struct State {
    script: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Recorded>,
}

/// The server. Stops when dropped.
#[derive(Debug)]
pub struct FakeHttp {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeHttp {
    /// Starts a server answering `default` to everything not scripted.
    pub fn start(default: Reply) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), default)
    }

    /// Starts a server on `addr` (a server stopped there a moment ago
    /// comes back: the address is retried for a few seconds).
    pub fn start_on(addr: SocketAddr, default: Reply) -> Self {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let std_listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(listener) => break listener,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot listen on {addr}: {e}"),
            }
        };
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let state = Arc::new((
            Mutex::new(State {
                script: VecDeque::new(),
                default,
                requests: Vec::new(),
            }),
            Condvar::new(),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("fake-http".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                    let accept = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            tokio::spawn(serve(stream, shared.clone()));
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stopped => {}
                    }
                });
            })
            .unwrap();
        Self {
            addr,
            state,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for the next request (replies are used in order).
    pub fn push(&self, reply: Reply) {
        self.state.0.lock().unwrap().script.push_back(reply);
    }

    /// Replaces the default reply.
    pub fn set_default(&self, reply: Reply) {
        self.state.0.lock().unwrap().default = reply;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// Waits until at least `n` requests arrived, at most `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut state = lock.lock().unwrap();
        while state.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = cv.wait_timeout(state, left).unwrap().0;
        }
        true
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(stream: tokio::net::TcpStream, state: Arc<(Mutex<State>, Condvar)>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if stream.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                let n = n.trim().to_ascii_lowercase();
                let v = v.trim().to_owned();
                if n == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers.push((n, v));
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let reply = {
            let (lock, cv) = &*state;
            let mut s = lock.lock().unwrap();
            s.requests.push(Recorded {
                method,
                path,
                headers,
                body,
                at: Instant::now(),
            });
            cv.notify_all();
            s.script.pop_front().unwrap_or_else(|| s.default.clone())
        };
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if reply.hang_up {
            return;
        }
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (n, v) in &reply.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&reply.body);
        if stream.get_mut().write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
