//! How long a panic hook holds the panicking thread: watchpost's against
//! sentry's panic integration, in the same run, each against three sinks:
//!
//! - `fast`: a local HTTP server answering 200 at once (for watchpost a
//!   webhook receiver, for sentry the envelope endpoint of a fake DSN
//!   `http://public@127.0.0.1:PORT/1`);
//! - `closed`: a port nothing listens on (the connection is refused);
//! - `slow`: a local server that reads the request and answers after 5 s.
//!
//! Each run is a child process (this binary re-executed) that installs one
//! hook and panics in `main`, as a service dying of a panic does. A hook
//! installed before the one measured (so chained by it, and run once it
//! returns) takes the time: the hold is from just before the panic to the
//! measured hook's return, backtrace capture, alert building and the wait
//! for delivery included. The parent also takes the time from the panic
//! to the child's exit, and checks, the moment the child exited, that the
//! alert had reached the fake sink (`fast` and `slow`: the bench fails
//! otherwise).
//!
//! The hooks:
//!
//! - `watchpost`: `PanicHook::new(&alerter).install()` with the defaults,
//!   the alerter on the real webhook sink (reqwest, rustls);
//! - `Watchpost`: the same sink on a `Watchpost` handle, whose drop (as
//!   the panic unwinds out of `main`) flushes what is queued: its hold is
//!   the hook's, its exit shows that flush (columns "exit");
//! - `sentry`: sentry 0.49's panic integration with its defaults (its
//!   reqwest transport; a 2 s flush on panic, and another wait for its
//!   queue when its guard drops).
//!
//! The figures are medians of a few runs; the binary is the bench
//! profile's (no debug info: the application's frames resolve from the
//! symbol table; the C library's from its debug info when a `-dbg`
//! package installed it, as on the machine of the figures in
//! docs/alerts.md). `CARGO_PROFILE_BENCH_DEBUG=line-tables-only` measures a
//! build that ships line tables (file:line in backtraces).
//!
//! Run with: cargo bench -p watchpost-benches --bench panic_hook

#![allow(missing_docs)]
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench that cannot set up should stop

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use watchpost::alert::{Alerter, WebhookFormat, WebhookSink};
use watchpost::panic::PanicHook;
use watchpost::Watchpost;
use watchpost_testkit::fake_http::{closed_port, sentry_ok, FakeHttp, Reply};

/// Set in a child: the hook to install.
const CHILD: &str = "WATCHPOST_BENCH_PANIC_CHILD";
/// Set in a child: the sink's URL (a webhook URL or a DSN).
const TARGET: &str = "WATCHPOST_BENCH_PANIC_TARGET";
/// The slow sink's answer comes this long after the request.
const SLOW: Duration = Duration::from_secs(5);
/// A child running longer than this is killed and the bench fails.
const HANG: Duration = Duration::from_secs(30);

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    match std::env::var(CHILD) {
        Ok(hook) => child(&hook),
        Err(_) => parent(),
    }
}

// ---------------------------------------------------------------- child --

/// When the panic began: a monotonic instant for the hold, a wall clock
/// one for the parent (the time to exit).
static PANICKED: OnceLock<(Instant, SystemTime)> = OnceLock::new();

/// What a child keeps alive until the panic unwinds out of `main`.
#[allow(dead_code)] // held for its drop
enum Installed {
    Alerter(Alerter),
    Handle(Watchpost),
    Sentry(sentry::ClientInitGuard),
}

#[inline(never)] // the first frame its backtrace shows
fn child(hook: &str) {
    let target = std::env::var(TARGET).expect("the parent sets the target");
    // Runs once the measured hook returns (it chains the hook it found).
    std::panic::set_hook(Box::new(|info| match PANICKED.get() {
        Some((at, wall)) => {
            let held = at.elapsed();
            let wall = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            println!(
                "held_us={} panicked_unix_us={}",
                held.as_micros(),
                wall.as_micros()
            );
        }
        // Setting up failed: say why.
        None => eprintln!("{info}"),
    }));
    let webhook = || WebhookSink::new(target.clone(), WebhookFormat::Json).unwrap();
    let _installed = match hook {
        "watchpost" => {
            let alerter = Alerter::builder()
                .service("bench")
                .sink(webhook())
                .build()
                .unwrap();
            PanicHook::new(&alerter).install();
            Installed::Alerter(alerter)
        }
        "handle" => Installed::Handle(Watchpost::builder().sink(webhook()).build().unwrap()),
        "sentry" => {
            // Its reqwest is built without a crypto provider of its own.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut options = sentry::ClientOptions::new();
            options.release = Some("bench@1.0.0".into());
            Installed::Sentry(sentry::init((target.as_str(), options)))
        }
        other => unreachable!("no hook {other}"),
    };
    // Let each settle (threads started, clients built), as a service has
    // long before its first panic.
    std::thread::sleep(Duration::from_millis(100));
    let order: Option<u64> = std::hint::black_box(None);
    let _ = PANICKED.set((Instant::now(), SystemTime::now()));
    order.expect("order total went negative");
}

// --------------------------------------------------------------- parent --

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Fast,
    Closed,
    Slow,
}

impl Case {
    const ALL: [Self; 3] = [Self::Fast, Self::Closed, Self::Slow];

    fn describe(self) -> &'static str {
        match self {
            Self::Fast => "fast sink (200 at once)",
            Self::Closed => "closed port (refused)",
            Self::Slow => "sink answering after 5 s",
        }
    }

    fn runs(self) -> usize {
        match self {
            Self::Fast | Self::Closed => 7,
            Self::Slow => 3,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hook {
    Watchpost,
    Handle,
    Sentry,
}

impl Hook {
    const ALL: [Self; 3] = [Self::Watchpost, Self::Handle, Self::Sentry];

    fn arg(self) -> &'static str {
        match self {
            Self::Watchpost => "watchpost",
            Self::Handle => "handle",
            Self::Sentry => "sentry",
        }
    }
}

/// One child's figures.
struct Run {
    held: Duration,
    /// From the panic to the process's exit.
    exit: Duration,
    /// Requests the sink held when the child exited.
    received: usize,
    /// Whether the alert's backtrace starts in the child's own code.
    backtrace: bool,
}

fn run_once(hook: Hook, case: Case) -> Run {
    let reply = match hook {
        Hook::Watchpost | Hook::Handle => Reply::text(200, "ok"),
        Hook::Sentry => sentry_ok(),
    };
    let reply = match case {
        Case::Slow => reply.delay(SLOW),
        Case::Fast | Case::Closed => reply,
    };
    let server = (case != Case::Closed).then(|| FakeHttp::start(reply));
    let port = server
        .as_ref()
        .map_or_else(closed_port, |s| s.addr().port());
    let target = match hook {
        Hook::Watchpost | Hook::Handle => format!("http://127.0.0.1:{port}/hook"),
        Hook::Sentry => format!("http://public@127.0.0.1:{port}/1"),
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, hook.arg())
        .env(TARGET, target)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let started = Instant::now();
    // The pipe closes as the child exits: that moment is its exit.
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        (out, SystemTime::now())
    });
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > HANG {
            let _ = child.kill();
            panic!("{hook:?} {} hung: killed after {HANG:?}", case.describe());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Right now, before anything else: no grace period.
    let requests = server.as_ref().map(FakeHttp::requests).unwrap_or_default();
    // The backtrace (resolved only as far as shown) holds this bench's
    // `child`: `panic_hook::child`, or `child` where line tables name
    // functions without their path.
    let backtrace = requests.iter().any(|r| {
        let body = String::from_utf8_lossy(&r.body);
        body.split("backtrace:").nth(1).is_some_and(|b| {
            b.split("\\n")
                .filter_map(|line| line.split_once(": ").map(|(_, symbol)| symbol.trim()))
                .any(|symbol| symbol == "child" || symbol.ends_with("::child"))
        })
    });
    let (out, exited) = reader.join().unwrap();
    let field = |name: &str| -> u64 {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} from {hook:?} {}: {out:?}", case.describe()))
    };
    let panicked = UNIX_EPOCH + Duration::from_micros(field("panicked_unix_us"));
    Run {
        held: Duration::from_micros(field("held_us")),
        exit: exited.duration_since(panicked).unwrap_or_default(),
        received: requests.len(),
        backtrace,
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

struct Figures {
    held: Duration,
    exit: Duration,
    delivered: usize,
    /// Runs whose alert showed the right backtrace.
    backtraces: usize,
    runs: usize,
}

fn measure(hook: Hook, case: Case) -> Figures {
    let runs: Vec<Run> = (0..case.runs()).map(|_| run_once(hook, case)).collect();
    Figures {
        held: median(runs.iter().map(|r| r.held).collect()),
        exit: median(runs.iter().map(|r| r.exit).collect()),
        delivered: runs.iter().filter(|r| r.received > 0).count(),
        backtraces: runs.iter().filter(|r| r.backtrace).count(),
        runs: runs.len(),
    }
}

fn parent() {
    let started = Instant::now();
    println!("Panic hook hold: from the panic to the hook's return, median ms (target: watchpost <= 0.5x sentry)");
    println!("Exit: from the panic to the process's exit, median ms\n");
    println!(
        "{:<25} | {:>9} | {:>9} | {:>5} | {:>9} | {:>9} | {:>9} | alert at the sink before exit",
        "case", "watchpost", "sentry", "ratio", "exit: wp", "Watchpost", "sentry"
    );
    let mut failures = Vec::new();
    let mut misses = Vec::new();
    for case in Case::ALL {
        let [ours, handle, theirs] = Hook::ALL.map(|hook| measure(hook, case));
        let ratio = ours.held.as_secs_f64() / theirs.held.as_secs_f64().max(1e-9);
        let delivered = match case {
            Case::Closed => "n/a (refused)".to_owned(),
            Case::Fast | Case::Slow => format!(
                "watchpost {}/{}, Watchpost {}/{}, sentry {}/{}",
                ours.delivered,
                ours.runs,
                handle.delivered,
                handle.runs,
                theirs.delivered,
                theirs.runs
            ),
        };
        println!(
            "{:<25} | {:>9} | {:>9} | {:>5.2} | {:>9} | {:>9} | {:>9} | {delivered}",
            case.describe(),
            ms(ours.held),
            ms(theirs.held),
            ratio,
            ms(ours.exit),
            ms(handle.exit),
            ms(theirs.exit),
        );
        for (name, figures) in [("watchpost", &ours), ("Watchpost", &handle)] {
            if case != Case::Closed && figures.delivered != figures.runs {
                failures.push(format!(
                    "{}: {name}'s alert reached the sink before the exit in {} of {} runs",
                    case.describe(),
                    figures.delivered,
                    figures.runs
                ));
            }
            if case != Case::Closed && figures.backtraces != figures.runs {
                failures.push(format!(
                    "{}: {name}'s alert showed a backtrace starting in `child` in {} of {} runs",
                    case.describe(),
                    figures.backtraces,
                    figures.runs
                ));
            }
        }
        if ratio > 0.5 {
            misses.push(format!(
                "{}: watchpost holds {ratio:.2}x sentry's time",
                case.describe()
            ));
        }
    }
    println!("\nfinished in {:.1} s", started.elapsed().as_secs_f64());
    for miss in &misses {
        println!("target missed: {miss}");
    }
    for failure in &failures {
        println!("FAILED: {failure}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
