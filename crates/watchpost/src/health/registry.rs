//! [`HealthChecks`]: the registry that runs checks, with single-flight,
//! caching, thresholds, timeouts and panic isolation.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::future::{join_all, FutureExt, Shared, WeakShared};
use tokio::time::Instant;

use super::builder::{Details, HealthChecksBuilder, Listener, Mode, Paths, Probe};
use super::check::{CheckResult, DynCheck, Observed, Status};
use super::report::{CheckReport, Report, StatusChange};

/// Output of a check that panicked.
pub(crate) const PANICKED: &str = "check panicked";
/// Output of a check that has not run yet in background mode.
pub(crate) const NOT_CHECKED_YET: &str = "not checked yet";

type RunFuture = Pin<Box<dyn Future<Output = Reading> + Send>>;

/// The registered health checks and their state. Cheap to clone (an `Arc`).
///
/// Build it with [`HealthChecks::builder`], then hand it to an adapter
/// (`watchpost_axum::routes`, `watchpost_actix::configure`,
/// `watchpost_tower::HealthService`) or call [`evaluate`](Self::evaluate)
/// yourself. See the [module docs](crate::health).
///
/// ```
/// use std::time::Duration;
/// use watchpost::checks::{fn_check, TcpCheck};
/// use watchpost::health::{HealthChecks, Probe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let health = HealthChecks::builder()
///     // Liveness: is this process able to serve at all? Keep it cheap.
///     .liveness("event-loop", fn_check(|| async { true }))
///     // Readiness: can it serve traffic now? Real round trips.
///     .readiness("cache", TcpCheck::new("127.0.0.1:9").timeout(Duration::from_millis(200)))
///     .build()?;
/// assert_eq!(health.evaluate(Probe::Liveness).await.http_status(), 200);
/// // Nothing listens on port 9: not ready, 503.
/// assert_eq!(health.evaluate(Probe::Readiness).await.http_status(), 503);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HealthChecks {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    entries: Vec<Entry>,
    cache_for: Duration,
    pub(crate) details: Details,
    mode: Mode,
    require_mark_ready: bool,
    ready: AtomicBool,
    shutting_down: AtomicBool,
    background_started: AtomicBool,
    listeners: Vec<Listener>,
    pub(crate) paths: Paths,
}

pub(crate) struct Entry {
    pub(crate) name: Arc<str>,
    check: Arc<dyn DynCheck>,
    liveness: bool,
    readiness: bool,
    critical: bool,
    timeout: Duration,
    fail_after: u32,
    recover_after: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last reported reading.
    reading: Option<Reading>,
    /// The run in progress, shared by every caller waiting for it. Weak, so a
    /// run nobody awaits any more is dropped (cancelled), never left half-done.
    inflight: Option<WeakShared<RunFuture>>,
    consecutive_failures: u32,
    consecutive_passes: u32,
    /// The output of the failure being reported, for the "recovering" note.
    failed_with: Option<String>,
    /// The last failure logged at WARN, to log a persisting failure once.
    last_logged: Option<(Status, Option<String>)>,
}

/// One reading of a check, thresholds applied.
#[derive(Clone, Debug)]
struct Reading {
    status: Status,
    output: Option<String>,
    observed: Option<Observed>,
    time: SystemTime,
    at: Instant,
    duration: Duration,
}

impl Entry {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: Arc<str>,
        check: Arc<dyn DynCheck>,
        liveness: bool,
        readiness: bool,
        critical: bool,
        timeout: Duration,
        fail_after: u32,
        recover_after: u32,
    ) -> Self {
        Self {
            name,
            check,
            liveness,
            readiness,
            critical,
            timeout,
            fail_after,
            recover_after,
            state: Mutex::new(State::default()),
        }
    }

    fn in_probe(&self, probe: Probe) -> bool {
        match probe {
            Probe::Liveness => self.liveness,
            Probe::Readiness => self.readiness,
            Probe::Health => true,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover the data if it ever did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn effective(&self, status: Status) -> Status {
        if !self.critical && status == Status::Fail {
            Status::Warn
        } else {
            status
        }
    }

    fn report(&self, reading: Reading) -> CheckReport {
        CheckReport {
            name: self.name.clone(),
            status: self.effective(reading.status),
            critical: self.critical,
            output: reading.output,
            observed: reading.observed,
            time: reading.time,
            duration: reading.duration,
        }
    }
}

impl fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.inner.entries.iter().map(|e| &*e.name).collect();
        f.debug_struct("HealthChecks")
            .field("checks", &names)
            .field("cache_for", &self.inner.cache_for)
            .field("details", &self.inner.details)
            .field("mode", &self.inner.mode)
            .field("shutting_down", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}

impl HealthChecks {
    /// Starts a [`HealthChecksBuilder`].
    pub fn builder() -> HealthChecksBuilder {
        HealthChecksBuilder::new()
    }

    pub(crate) fn from_parts(
        entries: Vec<Entry>,
        cache_for: Duration,
        details: Details,
        mode: Mode,
        require_mark_ready: bool,
        listeners: Vec<Listener>,
        paths: Paths,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries,
                cache_for,
                details,
                mode,
                require_mark_ready,
                ready: AtomicBool::new(false),
                shutting_down: AtomicBool::new(false),
                background_started: AtomicBool::new(false),
                listeners,
                paths,
            }),
        }
    }

    /// Runs (or reads from cache) the checks of one probe, concurrently, and
    /// returns the report.
    ///
    /// ```
    /// use watchpost::checks::fn_check;
    /// use watchpost::health::{HealthChecks, Probe, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let health = HealthChecks::builder()
    ///     .readiness("cache", fn_check(|| async { Err::<(), _>("connection refused") }))
    ///     .build()?;
    /// let report = health.evaluate(Probe::Readiness).await;
    /// assert_eq!(report.status(), Status::Fail);
    /// assert_eq!(report.http_status(), 503);
    /// assert_eq!(health.evaluate(Probe::Liveness).await.http_status(), 200);
    /// # Ok(()) }
    /// ```
    pub async fn evaluate(&self, probe: Probe) -> Report {
        self.evaluate_excluding(probe, &[]).await
    }

    /// Like [`evaluate`](Self::evaluate) for one check of the probe; `None` if
    /// the probe has no check of that name. Not affected by
    /// [`shutting_down`](Self::shutting_down) or [`mark_ready`](Self::mark_ready).
    pub async fn evaluate_check(&self, probe: Probe, name: &str) -> Option<Report> {
        let started = Instant::now();
        let idx = self
            .inner
            .entries
            .iter()
            .position(|e| e.in_probe(probe) && &*e.name == name)?;
        let reading = reading(&self.inner, idx).await;
        let check = self.inner.entries[idx].report(reading);
        Some(Report::new(vec![check], started.elapsed()))
    }

    pub(crate) async fn evaluate_excluding(
        &self,
        probe: Probe,
        exclude: &[Cow<'_, str>],
    ) -> Report {
        let started = Instant::now();
        if probe == Probe::Readiness {
            if self.is_shutting_down() {
                return Report::gated("shutting down");
            }
            if self.inner.require_mark_ready && !self.inner.ready.load(Ordering::Acquire) {
                return Report::gated("starting");
            }
        }
        let selected: Vec<usize> = (0..self.inner.entries.len())
            .filter(|&i| {
                let e = &self.inner.entries[i];
                e.in_probe(probe) && !exclude.iter().any(|x| *x == *e.name)
            })
            .collect();
        let readings = join_all(selected.iter().map(|&i| reading(&self.inner, i))).await;
        let checks = selected
            .iter()
            .zip(readings)
            .map(|(&i, r)| self.inner.entries[i].report(r))
            .collect();
        Report::new(checks, started.elapsed())
    }

    /// Makes readiness answer 503 from now on, while liveness stays 200, so
    /// the load balancer stops sending traffic before the process stops.
    /// [`shutdown_signal`](Self::shutdown_signal) calls it for you.
    pub fn shutting_down(&self) {
        if !self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            tracing::info!("shutting down: readiness now answers 503");
        }
    }

    /// Whether [`shutting_down`](Self::shutting_down) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Ends the warm-up started by
    /// [`HealthChecksBuilder::require_mark_ready`]; readiness then follows its
    /// checks. Calling it without that option does nothing harmful.
    pub fn mark_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
    }

    /// Waits for Ctrl-C or SIGTERM, flips readiness to 503, waits
    /// `drain_delay` so load balancers notice, then resolves: pass it to
    /// axum's `with_graceful_shutdown` (or await it before stopping an
    /// actix-web server) so in-flight requests finish after the drain.
    ///
    /// If the signal handlers can't be installed, the error is logged and the
    /// future never resolves (the server keeps running rather than stopping
    /// for no reason).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use watchpost::health::HealthChecks;
    /// # async fn run(health: HealthChecks) {
    /// let shutdown = health.shutdown_signal(Duration::from_secs(5));
    /// // axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    /// shutdown.await;
    /// # }
    /// ```
    pub fn shutdown_signal(
        &self,
        drain_delay: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            super::shutdown::wait_for_signal().await;
            this.shutting_down();
            tracing::info!(drain_delay = ?drain_delay, "draining before shutdown");
            tokio::time::sleep(drain_delay).await;
        }
    }

    /// The future that runs every check on the interval set with
    /// [`HealthChecksBuilder::background`], with a first run at once. Spawn it
    /// on your runtime. Without background mode, or if it is already running,
    /// it logs a warning and returns at once.
    pub fn background_task(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let Mode::Background(interval) = inner.mode else {
                tracing::warn!("HealthChecks::background_task: background mode is not configured; checks run on demand");
                return;
            };
            if inner.background_started.swap(true, Ordering::AcqRel) {
                tracing::warn!("HealthChecks::background_task: already running");
                return;
            }
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                join_all((0..inner.entries.len()).map(|i| run(inner.clone(), i))).await;
            }
        }
    }

    /// Spawns [`background_task`](Self::background_task) on the current Tokio
    /// runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as `tokio::spawn` does.
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.background_task())
    }

    /// The names of the registered checks, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.entries.iter().map(|e| &*e.name)
    }

    /// The base paths of the liveness, readiness and health probes, for
    /// adapters that mount routes.
    pub fn probe_paths(&self) -> [&str; 3] {
        let p = &self.inner.paths;
        [&p.livez, &p.readyz, &p.healthz]
    }
}

/// The reading to report for entry `idx`: from the cache or snapshot, by
/// joining the run in flight, or by starting one.
async fn reading(inner: &Arc<Inner>, idx: usize) -> Reading {
    let entry = &inner.entries[idx];
    let run_fut = {
        let mut state = entry.state();
        let fresh = state.reading.as_ref().filter(|r| match inner.mode {
            Mode::Background(_) => true,
            Mode::OnDemand => r.at.elapsed() < inner.cache_for,
        });
        if let Some(r) = fresh {
            return r.clone();
        }
        if let Mode::Background(_) = inner.mode {
            return Reading {
                status: Status::Fail,
                output: Some(NOT_CHECKED_YET.to_owned()),
                observed: None,
                time: SystemTime::now(),
                at: Instant::now(),
                duration: Duration::ZERO,
            };
        }
        match state.inflight.as_ref().and_then(WeakShared::upgrade) {
            Some(shared) => shared,
            None => {
                let fut: RunFuture = Box::pin(run(inner.clone(), idx));
                let shared: Shared<RunFuture> = fut.shared();
                state.inflight = shared.downgrade();
                shared
            }
        }
    };
    run_fut.await
}

/// Runs entry `idx` once under its timeout, catching panics, then applies the
/// thresholds, stores the reading, logs and notifies listeners.
async fn run(inner: Arc<Inner>, idx: usize) -> Reading {
    let entry = &inner.entries[idx];
    let time = SystemTime::now();
    let started = Instant::now();
    let raw = match std::panic::catch_unwind(AssertUnwindSafe(|| entry.check.call())) {
        Err(_) => CheckResult::fail(PANICKED),
        Ok(fut) => {
            match tokio::time::timeout(entry.timeout, AssertUnwindSafe(fut).catch_unwind()).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => CheckResult::fail(PANICKED),
                Err(_) => CheckResult::fail(format!(
                    "timed out after {}",
                    humantime::format_duration(entry.timeout)
                )),
            }
        }
    };
    let duration = started.elapsed();

    let (reading, change, log) = {
        let mut state = entry.state();
        let previous = state.reading.as_ref().map(|r| entry.effective(r.status));
        let log = log_decision(&mut state, (raw.status, raw.output.clone()));
        let reading = apply_thresholds(entry, &mut state, raw, time, duration);
        state.inflight = None;
        let current = entry.effective(reading.status);
        let change = (previous != Some(current)).then(|| StatusChange {
            check: entry.name.clone(),
            previous,
            current,
            output: reading.output.clone(),
            critical: entry.critical,
        });
        state.reading = Some(reading.clone());
        (reading, change, log)
    };

    match log {
        Log::NewFailure(status, output) => tracing::warn!(
            check = %entry.name,
            %status,
            output = output.as_deref().unwrap_or(""),
            "health check failing"
        ),
        Log::SameFailure(status, output) => tracing::debug!(
            check = %entry.name,
            %status,
            output = output.as_deref().unwrap_or(""),
            "health check still failing"
        ),
        Log::Recovered => tracing::info!(check = %entry.name, "health check passing again"),
        Log::Nothing => {}
    }
    if let Some(change) = change {
        for listener in &inner.listeners {
            if std::panic::catch_unwind(AssertUnwindSafe(|| listener(&change))).is_err() {
                tracing::error!(check = %entry.name, "a health status listener panicked");
            }
        }
    }
    reading
}

/// Turns a raw result into the reported reading: a check must fail
/// `fail_after` times in a row to be reported failing, and pass
/// `recover_after` times in a row to be reported passing again. The first
/// reading is taken as it is: there is no history to smooth against.
fn apply_thresholds(
    entry: &Entry,
    state: &mut State,
    raw: CheckResult,
    time: SystemTime,
    duration: Duration,
) -> Reading {
    let failed = raw.status == Status::Fail;
    if failed {
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        state.consecutive_passes = 0;
    } else {
        state.consecutive_passes = state.consecutive_passes.saturating_add(1);
        state.consecutive_failures = 0;
    }
    let previous = state.reading.as_ref().map(|r| (r.status, r.output.clone()));
    let (status, output) = match previous {
        Some((Status::Fail, _)) if !failed && state.consecutive_passes < entry.recover_after => {
            let why = state.failed_with.as_deref().unwrap_or("failing");
            let note = format!(
                "{why} (recovering: {} of {} passes)",
                state.consecutive_passes, entry.recover_after
            );
            (Status::Fail, Some(note))
        }
        // Under the failure threshold: keep reporting what we reported.
        Some((prev_status, prev_output))
            if prev_status != Status::Fail
                && failed
                && state.consecutive_failures < entry.fail_after =>
        {
            (prev_status, prev_output)
        }
        // The first reading, or a threshold reached: report the result as is.
        _ => (raw.status, raw.output),
    };
    if status == Status::Fail && failed {
        state.failed_with.clone_from(&output);
    }
    Reading {
        status,
        output,
        observed: raw.observed,
        time,
        at: Instant::now(),
        duration,
    }
}

enum Log {
    NewFailure(Status, Option<String>),
    SameFailure(Status, Option<String>),
    Recovered,
    Nothing,
}

/// Logs each distinct failure once at WARN (repeats at DEBUG) and a recovery
/// at INFO, so a check failing on every probe doesn't flood the log.
fn log_decision(state: &mut State, raw: (Status, Option<String>)) -> Log {
    match raw {
        (Status::Pass, _) => match state.last_logged.take() {
            Some(_) => Log::Recovered,
            None => Log::Nothing,
        },
        raw => {
            if state.last_logged.as_ref() == Some(&raw) {
                Log::SameFailure(raw.0, raw.1)
            } else {
                state.last_logged = Some(raw.clone());
                Log::NewFailure(raw.0, raw.1)
            }
        }
    }
}
