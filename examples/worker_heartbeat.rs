//! Run with: cargo run --example worker_heartbeat
//!
//! A background worker ("sync invoices", every few seconds) watched by a
//! heartbeat, a dead-man's switch. A crash raises an error; a worker that
//! silently stopped raises nothing, so the alert has to come from the
//! silence.
//!
//! - Each run goes through the heartbeat's `run()` guard: a success beats,
//!   an error or a panic reports the run failed.
//! - A failed run, or no successful run for a period plus its grace, fires
//!   **one** incident (`heartbeat:invoice-sync`), however many runs fail in
//!   a row; the next success resolves it. An outage is two messages.
//! - The heartbeat's check is a liveness check: `/livez` answers 503 while
//!   the worker is down, so an orchestrator restarts a stuck process.
//!   `GET /` says where the worker stands.
//!
//! Environment:
//!
//! - `PORT`: the health endpoint listens on 127.0.0.1:PORT (default 3000).
//! - `WORKER_PERIOD_MS`: the job runs every this many milliseconds (default
//!   10000). The heartbeat expects a success every period, one period late
//!   at most.
//! - `WORKER_BREAK`: breaks some runs on purpose, to watch the alerts:
//!   - `fail:3-5`: runs 3 to 5 return an error ("invoice API answered
//!     503"); the incident fires at run 3 and resolves at run 6.
//!   - `panic:3`: run 3 panics; the panic hook reports the panic, the
//!     heartbeat the failed run, and the worker carries on.
//!   - `stall:3-8`: the worker is stuck through runs 3 to 8: they never
//!     start, and nothing but the missed deadline says so.
//!
//!   A single run (`fail:4`) works too. Unset: every run succeeds.
//! - `TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID` (and `WATCHPOST_TELEGRAM_API_URL`,
//!   `WATCHPOST_WEBHOOK_URL`, `WATCHPOST_WEBHOOK_FORMAT`, `WATCHPOST_SENTRY_DSN`,
//!   `WATCHPOST_SERVICE`, `WATCHPOST_ENV`): where alerts go; nothing set,
//!   they go to the log.
//!
//! ```sh
//! WORKER_PERIOD_MS=1000 WORKER_BREAK=fail:3-5 cargo run --example worker_heartbeat
//! ```
//!
//! Ctrl-C or SIGTERM: the run in progress finishes, the worker stops,
//! pending alerts are flushed, and the process exits 0.

use std::time::Duration;

use axum::{routing::get, Router};
use tokio::time::MissedTickBehavior;
use watchpost::alert::AlerterBuilder;
use watchpost::health::HealthChecks;
use watchpost::monitor::Heartbeat;

#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {value:?}"))?,
        Err(_) => 3000,
    };
    let period = match std::env::var("WORKER_PERIOD_MS") {
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(format!(
                    "WORKER_PERIOD_MS must be a number of milliseconds above 0, got {value:?}"
                )
                .into())
            }
        },
        Err(_) => Duration::from_secs(10),
    };
    let breaks = match std::env::var("WORKER_BREAK") {
        Ok(value) if !value.trim().is_empty() => {
            Some(Break::parse(&value).map_err(|reason| format!("WORKER_BREAK: {reason}"))?)
        }
        _ => None,
    };

    let alerter = AlerterBuilder::from_env()?.build()?;
    watchpost::panic::install(&alerter);

    // Down when a run fails, or when no run succeeded for a period plus the
    // grace. Each run may also take up to the grace (`max_run_time`)
    // before it counts as stuck.
    let heartbeat = Heartbeat::builder("invoice-sync", period)
        .grace(period)
        .alerter(&alerter) // one incident per outage, resolved by the next success
        .build()?;

    // Liveness, not readiness: restarting the process is the fix for a
    // stuck worker. The heartbeat alerts by itself, so the health checks
    // don't get `alert_on_failure` too (that would be a second incident).
    let health = HealthChecks::builder()
        .liveness("invoice-sync", heartbeat.check())
        .build()?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(run_worker(heartbeat.clone(), period, breaks, stopped));

    let app = Router::new()
        .route(
            "/",
            get(move || {
                let state = heartbeat.state(); // new, up, late, started or down
                async move { format!("invoice-sync: {state}\n") }
            }),
        )
        .merge(watchpost_axum::routes(health.clone()));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("listening on {base}");
    for path in ["/", "/livez", "/healthz?verbose"] {
        println!("  {base}{path}");
    }
    let sinks: Vec<&str> = alerter.sink_names().collect();
    println!("alerts go to: {}", sinks.join(", "));
    println!("invoice-sync runs every {period:?}");

    // Nothing routes user traffic here: no drain delay. On the signal, the
    // worker is told to stop after its current run.
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            health.shutdown_signal(Duration::ZERO).await;
            let _ = stop.send(true);
        })
        .await?;
    if worker.await.is_err() {
        eprintln!("the worker loop ended abnormally");
    }

    let flushed =
        tokio::task::spawn_blocking(move || alerter.flush(Duration::from_secs(3))).await?;
    if !flushed {
        eprintln!("some alerts were still undelivered at exit");
    }
    println!("shut down cleanly");
    Ok(())
}

/// The worker loop: one run per period until told to stop.
async fn run_worker(
    heartbeat: Heartbeat,
    period: Duration,
    breaks: Option<Break>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(period);
    // A slow run delays the next one instead of causing a catch-up burst.
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 1u64.. {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => break,
        }
        let mode = breaks.as_ref().and_then(|b| b.mode_for(n));
        if mode == Some(Mode::Stall) {
            // Stuck before the run starts (a lock, a connection that never
            // answers): no run, no beat. Only the deadline notices.
            tracing::warn!(run = n, "worker stuck: run {n} never starts");
            continue;
        }

        // Each run in a task of its own: a panic fails this run (the
        // guard, dropped while unwinding, reports it), not the loop.
        let hb = heartbeat.clone();
        let outcome = tokio::spawn(async move {
            let run = hb.run();
            let result = sync_invoices(n, mode).await;
            match &result {
                Ok(_) => run.success(),
                Err(error) => run.fail(error),
            }
            result
        })
        .await;
        match outcome {
            Ok(Ok(count)) => tracing::info!(run = n, "synced {count} invoices"),
            Ok(Err(error)) => tracing::warn!(run = n, "invoice sync failed: {error}"),
            Err(_) => tracing::error!(run = n, "invoice sync panicked"),
        }
    }
}

/// The job. Here it pretends; yours calls an API or a database, and
/// returns within the period even when there is nothing to do.
async fn sync_invoices(run: u64, mode: Option<Mode>) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    match mode {
        Some(Mode::Fail) => Err("invoice API answered 503 Service Unavailable".to_owned()),
        Some(Mode::Panic) => panic!("demo panic in invoice sync run {run}"),
        _ => Ok(run % 5 + 1),
    }
}

/// How a broken run goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Fail,
    Panic,
    Stall,
}

/// `WORKER_BREAK`: which runs break, and how.
#[derive(Debug)]
struct Break {
    mode: Mode,
    first: u64,
    last: u64,
}

impl Break {
    /// `fail:3-5`, `panic:3`, `stall:3-8`.
    fn parse(value: &str) -> Result<Self, String> {
        let expected = format!(
            "expected fail:RUNS, panic:RUNS or stall:RUNS with RUNS a run number \
             or a range such as 3-5, got {value:?}"
        );
        let (mode, runs) = value.trim().split_once(':').ok_or(&expected)?;
        let mode = match mode {
            "fail" => Mode::Fail,
            "panic" => Mode::Panic,
            "stall" => Mode::Stall,
            _ => return Err(expected),
        };
        let (first, last) = runs.split_once('-').unwrap_or((runs, runs));
        match (first.trim().parse::<u64>(), last.trim().parse::<u64>()) {
            (Ok(first), Ok(last)) if first >= 1 && first <= last => Ok(Self { mode, first, last }),
            _ => Err(expected),
        }
    }

    fn mode_for(&self, run: u64) -> Option<Mode> {
        (self.first..=self.last).contains(&run).then_some(self.mode)
    }
}
