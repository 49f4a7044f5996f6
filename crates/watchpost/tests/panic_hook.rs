//! The panic hook, end to end, in child processes (a hook is
//! process-global, and the point is what happens as a process dies).
//!
//! `main` runs in one of two modes. As the parent it starts one fake HTTP
//! server per case, re-runs this binary as a child for each case (in
//! parallel), waits for each child to exit (killing it if it hangs) and
//! checks, the moment it exited, that the server already holds the alert:
//! the hook must have delivered it before the process died. As a child
//! (`WATCHPOST_PANIC_TEST_MODE` set) it installs the hook with a small sink
//! posting each alert to the server, and panics as the case says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use watchpost::alert::{Alerter, DeliverFuture, Notification, Sink, SinkError};
use watchpost::panic::{self as hook, CatchScope, PanicHook};
use watchpost_testkit::fake_http::{FakeHttp, Recorded, Reply};

const MODE: &str = "WATCHPOST_PANIC_TEST_MODE";
const ADDR: &str = "WATCHPOST_PANIC_TEST_ADDR";
/// A child still running after this is hung: killed, and the case fails.
const HANG: Duration = Duration::from_secs(60);

fn main() {
    match std::env::var(MODE) {
        Ok(mode) => child(&mode),
        Err(_) => parent(),
    }
}

// ---------------------------------------------------------------- child --

/// Posts each alert as JSON to the fake server and waits for its answer,
/// so a delivered alert is one the server has recorded.
#[derive(Debug)]
struct HttpSink {
    addr: String,
}

/// Delivery attempts so far, by every [`HttpSink`] of the process.
static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

/// Says on stderr how many attempts were made when the hooks installed
/// after it (watchpost's) returned, then runs the default hook: install
/// it first.
fn report_attempts_when_the_hook_returns() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!(
            "attempts when the hook returned: {}",
            ATTEMPTS.load(Ordering::SeqCst)
        );
        default(info);
    }));
}

/// Says on stderr how many attempts were made when it is dropped: after
/// everything `main` declared after it, as a panic unwinds out of `main`.
struct ReportAttemptsAtExit;

impl Drop for ReportAttemptsAtExit {
    fn drop(&mut self) {
        eprintln!("attempts at exit: {}", ATTEMPTS.load(Ordering::SeqCst));
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        "http"
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a> {
        ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let labels: serde_json::Map<String, serde_json::Value> = n
                .alert()
                .labels()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
            let body = serde_json::json!({
                "title": n.alert().title(),
                "severity": n.alert().severity().as_str(),
                "key": n.key(),
                "detail": n.alert().detail_text(),
                "labels": labels,
                "service": n.service().name,
            })
            .to_string();
            let failed = |e: std::io::Error| SinkError::transient(e.to_string());
            let mut stream = tokio::net::TcpStream::connect(&self.addr)
                .await
                .map_err(failed)?;
            let request = format!(
                "POST /alert HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{body}",
                self.addr,
                body.len()
            );
            stream.write_all(request.as_bytes()).await.map_err(failed)?;
            let mut status = String::new();
            BufReader::new(stream)
                .read_line(&mut status)
                .await
                .map_err(failed)?;
            if status.starts_with("HTTP/1.1 200") {
                Ok(())
            } else {
                Err(SinkError::transient(format!("answered {status:?}")))
            }
        })
    }
}

/// A sink whose delivery panics (on the delivery thread).
#[derive(Debug)]
struct PanickingSink;

impl Sink for PanickingSink {
    fn name(&self) -> &str {
        "panicking"
    }

    fn deliver<'a>(&'a self, _: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(async { panic!("sink exploded") })
    }
}

fn alerter(sinks: &[&str]) -> Alerter {
    let addr = std::env::var(ADDR).expect("the parent sets the server address");
    let mut builder = Alerter::builder().service("panic-test");
    for sink in sinks {
        builder = match *sink {
            "http" => builder.sink(HttpSink { addr: addr.clone() }),
            "panicking" => builder.sink(PanickingSink),
            other => unreachable!("no sink {other}"),
        };
    }
    builder.build().unwrap()
}

fn child(mode: &str) {
    match mode {
        "main" => {
            hook::install(&alerter(&["http"]));
            let order: Option<u32> = std::hint::black_box(None);
            order.unwrap();
        }
        "thread" => {
            hook::install(&alerter(&["http"]));
            let worker = std::thread::Builder::new()
                .name("worker-7".into())
                .spawn(|| panic!("worker {} failed", 7))
                .unwrap();
            assert!(worker.join().is_err());
            // The process goes on; exit at once, with nothing flushed.
            std::process::exit(0);
        }
        "refused" => {
            // Nothing listens where the sink posts; a long timeout:
            // finishing quickly proves the refusal ended the wait, and one
            // attempt that no retry happened within it.
            let addr = closed_addr();
            let alerter = Alerter::builder()
                .service("panic-test")
                .sink(HttpSink { addr })
                .build()
                .unwrap();
            report_attempts_when_the_hook_returns();
            PanicHook::new(&alerter)
                .timeout(Duration::from_secs(30))
                .install();
            panic!("main exploded, sink down");
        }
        "refused-handle" => {
            // A `Watchpost` dropped as the panic unwinds out of `main`
            // flushes: not the retries of the sink that refused.
            let _report = ReportAttemptsAtExit;
            let _wp = watchpost::Watchpost::builder()
                .sink(HttpSink {
                    addr: closed_addr(),
                })
                .flush_timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            panic!("main exploded, sink down, handle dropped");
        }
        "slow" => {
            // The server answers after 5 s: the hook waits its default
            // timeout (1 s), and the request is written long before.
            report_attempts_when_the_hook_returns();
            hook::install(&alerter(&["http"]));
            panic!("main exploded, sink slow");
        }
        "sink-panics" => {
            // A long timeout: finishing quickly proves nobody waited it out.
            PanicHook::new(&alerter(&["panicking", "http"]))
                .timeout(Duration::from_secs(30))
                .install();
            panic!("main exploded");
        }
        "scope" => {
            let alerter = alerter(&["http"]);
            hook::install(&alerter);
            let started = Instant::now();
            let caught = CatchScope::for_request("GET", "/boom").run(|| panic!("handler exploded"));
            let held = started.elapsed();
            let panicked = caught.unwrap_err();
            assert!(panicked.is_reported(), "the hook reported it");
            // The layer would call this: it must not send a second alert.
            panicked.report(&alerter);
            // The server answers after 4 s: the hook must not have waited.
            assert!(held < Duration::from_secs(3), "held {held:?}");
            assert!(alerter.flush(Duration::from_secs(30)));
            std::process::exit(0);
        }
        "twice" => {
            let alerter = alerter(&["http"]);
            assert!(!hook::is_installed());
            hook::try_install(&alerter).unwrap();
            assert!(hook::is_installed());
            let again = hook::try_install(&alerter).unwrap_err();
            assert_eq!(
                again.to_string(),
                "watchpost's panic hook is already installed"
            );
            // `install` panics; that panic goes through the hook itself.
            let payload = std::panic::catch_unwind(|| hook::install(&alerter)).unwrap_err();
            let message = payload.downcast_ref::<String>().unwrap();
            assert_eq!(message, "watchpost's panic hook is already installed");
            std::process::exit(0);
        }
        #[cfg(feature = "telegram")]
        "telegram" => {
            let addr = std::env::var(ADDR).unwrap();
            let sink = watchpost::alert::TelegramSink::builder("123456:test-token", "42")
                .api_url(format!("http://{addr}"))
                .build()
                .unwrap();
            hook::install(&Alerter::builder().sink(sink).build().unwrap());
            panic!("payment <webhook> lost");
        }
        other => unreachable!("no mode {other}"),
    }
}

/// An address nothing listens on: connections to it are refused.
fn closed_addr() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    closed.local_addr().unwrap().to_string()
}

// --------------------------------------------------------------- parent --

struct Outcome {
    status: ExitStatus,
    elapsed: Duration,
    stderr: String,
    /// What the server held the moment the child exited.
    requests: Vec<Recorded>,
}

impl Outcome {
    fn alerts(&self) -> Vec<serde_json::Value> {
        self.requests.iter().map(Recorded::json).collect()
    }

    /// The one alert the server must hold.
    fn alert(&self) -> Result<serde_json::Value, String> {
        match self.alerts().as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("expected one alert, the server holds {other:?}")),
        }
    }
}

struct Case {
    mode: &'static str,
    what: &'static str,
    reply: Option<Reply>,
    check: fn(&Outcome) -> Result<(), String>,
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn label<'a>(alert: &'a serde_json::Value, name: &str) -> &'a str {
    alert["labels"][name].as_str().unwrap_or_default()
}

fn cases() -> Vec<Case> {
    #[allow(unused_mut)]
    let mut cases = vec![
        Case {
            mode: "main",
            what: "a panic in main is delivered before the process dies, stderr still says `panicked at`",
            reply: None,
            check: |o| {
                ensure(o.status.code() == Some(101), || format!("exit {:?}", o.status))?;
                let alert = o.alert()?;
                ensure(
                    alert["title"] == "panic: called `Option::unwrap()` on a `None` value",
                    || format!("title {}", alert["title"]),
                )?;
                ensure(alert["severity"] == "critical", || format!("{alert}"))?;
                ensure(alert["service"] == "panic-test", || format!("{alert}"))?;
                let key = alert["key"].as_str().unwrap_or_default();
                ensure(
                    key.starts_with("panic:") && key.contains("panic_hook.rs:"),
                    || format!("key {key}"),
                )?;
                ensure(label(&alert, "thread") == "main", || format!("{alert}"))?;
                ensure(key.ends_with(label(&alert, "location")), || format!("{alert}"))?;
                let detail = alert["detail"].as_str().unwrap_or_default();
                let first_frame = detail
                    .split("backtrace:\n")
                    .nth(1)
                    .and_then(|b| b.lines().next())
                    .unwrap_or_default();
                ensure(first_frame.contains("panic_hook::child"), || {
                    format!("the backtrace should start in the test's code:\n{detail}")
                })?;
                ensure(o.stderr.contains("panicked at"), || "no default message".into())
            },
        },
        Case {
            mode: "thread",
            what: "a panic on a spawned thread is delivered before join returns",
            reply: None,
            check: |o| {
                ensure(o.status.success(), || format!("exit {:?}", o.status))?;
                let alert = o.alert()?;
                ensure(alert["title"] == "panic: worker 7 failed", || format!("{alert}"))?;
                ensure(label(&alert, "thread") == "worker-7", || format!("{alert}"))?;
                ensure(o.stderr.contains("'worker-7'") && o.stderr.contains("panicked at"), || {
                    "no default message".into()
                })
            },
        },
        Case {
            mode: "sink-panics",
            what: "a sink panicking on the delivery thread: no alert about it, no deadlock",
            reply: None,
            check: |o| {
                ensure(o.status.code() == Some(101), || format!("exit {:?}", o.status))?;
                ensure(o.elapsed < Duration::from_secs(20), || {
                    format!("took {:?}: the hook waited out its timeout", o.elapsed)
                })?;
                // The panic, and (if it got out before the process died)
                // the note that the panicking sink lost it: no alert
                // about the sink's own panic.
                let alerts = o.alerts();
                ensure(!alerts.is_empty() && alerts.len() <= 2, || format!("{alerts:?}"))?;
                ensure(alerts[0]["title"] == "panic: main exploded", || format!("{alerts:?}"))?;
                if let Some(note) = alerts.get(1) {
                    ensure(
                        note["title"] == "1 alert could not be delivered to panicking",
                        || format!("{note}"),
                    )?;
                }
                ensure(o.stderr.contains("sink exploded"), || {
                    "the sink's panic should still print".into()
                })
            },
        },
        Case {
            mode: "refused",
            what: "a sink refusing the connection ends the hook's wait at once",
            reply: None,
            check: |o| {
                ensure(o.status.code() == Some(101), || format!("exit {:?}", o.status))?;
                ensure(o.elapsed < Duration::from_secs(10), || {
                    format!("took {:?}: the hook waited out its 30 s", o.elapsed)
                })?;
                ensure(o.stderr.contains("attempts when the hook returned: 1\n"), || {
                    format!("one attempt, no retry inside the wait:\n{}", o.stderr)
                })?;
                ensure(o.stderr.contains("main exploded, sink down"), || {
                    "the default message still prints".into()
                })
            },
        },
        Case {
            mode: "refused-handle",
            what: "a Watchpost dropped by the panic doesn't wait out the retries of a sink that refused",
            reply: None,
            check: |o| {
                ensure(o.status.code() == Some(101), || format!("exit {:?}", o.status))?;
                ensure(o.elapsed < Duration::from_secs(20), || {
                    format!("took {:?}: the drop waited out its 30 s flush", o.elapsed)
                })?;
                ensure(o.stderr.contains("attempts at exit: 1\n"), || {
                    format!("one attempt, no retry while the handle flushed:\n{}", o.stderr)
                })?;
                // The drop says what it did, not the 30 s it could have waited.
                ensure(
                    o.stderr.contains("one try on each sink as a panic unwinds")
                        && !o.stderr.contains("waited 30s"),
                    || format!("the drop message says how long it waited:\n{}", o.stderr),
                )
            },
        },
        Case {
            mode: "slow",
            what: "a sink answering after 5 s: the hook stops waiting at its timeout, the alert is at the sink",
            reply: Some(Reply::text(200, "ok").delay(Duration::from_secs(5))),
            check: |o| {
                ensure(o.status.code() == Some(101), || format!("exit {:?}", o.status))?;
                let alert = o.alert()?;
                ensure(alert["title"] == "panic: main exploded, sink slow", || {
                    format!("{alert}")
                })?;
                ensure(o.stderr.contains("attempts when the hook returned: 1\n"), || {
                    format!("one attempt, in flight:\n{}", o.stderr)
                })?;
                // A hang catcher: the answer (5 s) was not waited for.
                ensure(o.elapsed < Duration::from_millis(4500), || {
                    format!("took {:?}: the hook waited for the answer", o.elapsed)
                })
            },
        },
        Case {
            mode: "scope",
            what: "in a catch scope the hook sends without holding the thread, once",
            reply: Some(Reply::text(200, "ok").delay(Duration::from_secs(4))),
            check: |o| {
                ensure(o.status.success(), || format!("exit {:?}", o.status))?;
                let alert = o.alert()?;
                ensure(alert["title"] == "panic: handler exploded", || format!("{alert}"))?;
                ensure(label(&alert, "request") == "GET /boom", || format!("{alert}"))?;
                let detail = alert["detail"].as_str().unwrap_or_default();
                ensure(detail.contains("caught"), || detail.to_owned())
            },
        },
        Case {
            mode: "twice",
            what: "try_install twice gives AlreadyInstalled, install panics",
            reply: None,
            check: |o| {
                ensure(o.status.success(), || format!("exit {:?}", o.status))?;
                let alert = o.alert()?;
                ensure(
                    alert["title"] == "panic: watchpost's panic hook is already installed",
                    || format!("{alert}"),
                )
            },
        },
    ];
    #[cfg(feature = "telegram")]
    cases.push(Case {
        mode: "telegram",
        what: "through the real Telegram sink, before the process dies",
        reply: Some(watchpost_testkit::fake_http::telegram_ok()),
        check: |o| {
            ensure(o.status.code() == Some(101), || {
                format!("exit {:?}", o.status)
            })?;
            let [request] = o.requests.as_slice() else {
                return Err(format!("expected one sendMessage, got {:?}", o.requests));
            };
            ensure(request.path.ends_with("/sendMessage"), || {
                request.path.clone()
            })?;
            let text = request.json()["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            ensure(text.contains("panic: payment &lt;webhook&gt; lost"), || {
                text.clone()
            })?;
            ensure(text.contains("backtrace"), || text.clone())
        },
    });
    cases
}

struct Running {
    case: Case,
    server: FakeHttp,
    child: Child,
    started: Instant,
    stderr: std::thread::JoinHandle<String>,
}

fn spawn(case: Case) -> Running {
    let server = FakeHttp::start(Reply::text(200, "ok"));
    if let Some(reply) = case.reply.clone() {
        server.push(reply);
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(MODE, case.mode)
        .env(ADDR, server.addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out);
        out
    });
    Running {
        case,
        server,
        child,
        started: Instant::now(),
        stderr,
    }
}

fn parent() {
    let started = Instant::now();
    let mut running: Vec<Running> = cases().into_iter().map(spawn).collect();
    let mut failed = 0;
    while !running.is_empty() {
        let mut i = 0;
        while i < running.len() {
            let run = &mut running[i];
            let status = match run.child.try_wait().unwrap() {
                Some(status) => status,
                None if run.started.elapsed() > HANG => {
                    let _ = run.child.kill();
                    run.child.wait().unwrap()
                }
                None => {
                    i += 1;
                    continue;
                }
            };
            // Right now, before anything else: no grace period.
            let requests = run.server.requests();
            let elapsed = run.started.elapsed();
            let run = running.swap_remove(i);
            let outcome = Outcome {
                status,
                elapsed,
                stderr: run.stderr.join().unwrap(),
                requests,
            };
            let result = if elapsed > HANG {
                Err(format!("hung: killed after {HANG:?}"))
            } else {
                (run.case.check)(&outcome)
            };
            match result {
                Ok(()) => println!(
                    "panic_hook {} ... ok ({} ms): {}",
                    run.case.mode,
                    elapsed.as_millis(),
                    run.case.what
                ),
                Err(why) => {
                    failed += 1;
                    println!(
                        "panic_hook {} ... FAILED: {}\n  {why}\n  child stderr:\n{}",
                        run.case.mode, run.case.what, outcome.stderr
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "panic_hook: {} failed, finished in {} ms",
        failed,
        started.elapsed().as_millis()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
