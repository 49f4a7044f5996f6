//! [`HealthChecks`]: the registry that runs checks, with single-flight,
//! caching, thresholds, timeouts and panic isolation.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::{join_all, FutureExt, Shared, WeakShared};

use super::builder::{Details, HealthChecksBuilder, Listener, Mode, Paths, Probe};
use super::check::{CheckResult, DynCheck, Observed, Status};
use super::report::{CheckReport, Report, StatusChange};
use crate::alert::Alerter;
use crate::clock::{Clock, Tick};

/// Output of a check that panicked.
pub(crate) const PANICKED: &str = "check panicked";

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
    clock: Clock,
    /// Runs the checks on watchpost's thread, when an alerter is attached.
    runner: OnceLock<Arc<Runner>>,
}

pub(crate) struct Entry {
    pub(crate) name: Arc<str>,
    component_type: Arc<str>,
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

/// Runs every check on the background interval, on watchpost's thread: a
/// watcher of the health checks' clock that starts a run when one is due.
struct Runner {
    health: Weak<Inner>,
    alerter: Alerter,
    interval: Duration,
    state: Mutex<RunnerState>,
}

#[derive(Default)]
struct RunnerState {
    next: Option<Instant>,
    running: bool,
    last_run: Option<SystemTime>,
}

impl Runner {
    fn state(&self) -> MutexGuard<'_, RunnerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a run on watchpost's thread unless one is running.
    fn start(self: &Arc<Self>, inner: Arc<Inner>, now: Instant) {
        {
            let mut state = self.state();
            if state.running {
                return;
            }
            state.running = true;
            state.next = Some(now + self.interval);
        }
        let busy = inner.clock.busy();
        let this = self.clone();
        self.alerter.engine().spawn(async move {
            refresh_all(&inner).await;
            let mut state = this.state();
            state.running = false;
            state.last_run = Some(inner.clock.system_time());
            drop(state);
            drop(busy);
        });
    }
}

impl Tick for Runner {
    fn tick(&self, now: Instant) {
        let Some(inner) = self.health.upgrade() else {
            return;
        };
        let due = {
            let state = self.state();
            !state.running && state.next.is_none_or(|next| now >= next)
        };
        if due {
            if let Some(this) = inner.runner.get() {
                this.start(inner.clone(), now);
            }
        }
    }
}

impl Entry {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: Arc<str>,
        component_type: Arc<str>,
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
            component_type,
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
            component_type: self.component_type.clone(),
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

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        entries: Vec<Entry>,
        cache_for: Duration,
        details: Details,
        mode: Mode,
        require_mark_ready: bool,
        listeners: Vec<Listener>,
        paths: Paths,
        clock: Clock,
        alerter: Option<Alerter>,
    ) -> Self {
        let inner = Arc::new(Inner {
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
            clock,
            runner: OnceLock::new(),
        });
        if let (Mode::Background(interval), Some(alerter)) = (inner.mode, alerter) {
            let runner = Arc::new(Runner {
                health: Arc::downgrade(&inner),
                alerter,
                interval,
                state: Mutex::default(),
            });
            inner.background_started.store(true, Ordering::Release);
            let _ = inner.runner.set(runner.clone());
            let weak: Weak<dyn Tick> = Arc::downgrade(&runner) as Weak<dyn Tick>;
            runner.alerter.watch(&inner.clock, weak);
            // The first run now, not a tick from now.
            runner.start(inner.clone(), inner.clock.now());
        }
        Self { inner }
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
        let started = self.inner.clock.now();
        let idx = self
            .inner
            .entries
            .iter()
            .position(|e| e.in_probe(probe) && &*e.name == name)?;
        let reading = reading(&self.inner, idx).await;
        let check = self.inner.entries[idx].report(reading);
        let took = self.inner.clock.now().saturating_duration_since(started);
        Some(Report::new(vec![check], took))
    }

    pub(crate) async fn evaluate_excluding(
        &self,
        probe: Probe,
        exclude: &[Cow<'_, str>],
    ) -> Report {
        let started = self.inner.clock.now();
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
        let took = self.inner.clock.now().saturating_duration_since(started);
        Report::new(checks, took)
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
            this.inner.clock.sleep(drain_delay).await;
        }
    }

    /// The future that runs every check on the interval set with
    /// [`HealthChecksBuilder::background`], with a first run at once, for
    /// health checks without an alerter (with one, watchpost's thread
    /// runs them: nothing to spawn). Spawn it on your runtime. Without
    /// background mode, or if the checks already run in the background,
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
            loop {
                let next = inner.clock.sleep(interval);
                refresh_all(&inner).await;
                next.await;
            }
        }
    }

    /// When the background runs last finished a round of every check
    /// (on this clock), if they run on watchpost's thread and have.
    pub fn last_background_run(&self) -> Option<SystemTime> {
        self.inner.runner.get().and_then(|r| r.state().last_run)
    }

    /// Whether the checks run in the background on watchpost's thread
    /// (they do when an alerter is attached).
    pub fn runs_in_background(&self) -> bool {
        self.inner.runner.get().is_some()
    }

    /// The interval of background runs, in background mode.
    pub fn background_interval(&self) -> Option<Duration> {
        match self.inner.mode {
            Mode::Background(interval) => Some(interval),
            Mode::OnDemand => None,
        }
    }

    /// The clock behind caching, timeouts and background runs.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
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
        let now = inner.clock.now();
        let fresh = state.reading.as_ref().filter(|r| match inner.mode {
            // The last snapshot, however old: the background refreshes it.
            Mode::Background(_) => true,
            Mode::OnDemand => now.saturating_duration_since(r.at) < inner.cache_for,
        });
        if let Some(r) = fresh {
            return r.clone();
        }
        inflight(inner, idx, &mut state)
    };
    run_fut.await
}

/// The run in flight for entry `idx`, or a new one, shared by every caller.
fn inflight(inner: &Arc<Inner>, idx: usize, state: &mut State) -> Shared<RunFuture> {
    match state.inflight.as_ref().and_then(WeakShared::upgrade) {
        Some(shared) => shared,
        None => {
            let fut: RunFuture = Box::pin(run(inner.clone(), idx));
            let shared: Shared<RunFuture> = fut.shared();
            state.inflight = shared.downgrade();
            shared
        }
    }
}

/// Runs every check once (joining runs already in flight), concurrently.
async fn refresh_all(inner: &Arc<Inner>) {
    let runs: Vec<Shared<RunFuture>> = (0..inner.entries.len())
        .map(|i| inflight(inner, i, &mut inner.entries[i].state()))
        .collect();
    join_all(runs).await;
}

/// Runs entry `idx` once under its timeout, catching panics, then applies the
/// thresholds, stores the reading, logs and notifies listeners.
async fn run(inner: Arc<Inner>, idx: usize) -> Reading {
    let entry = &inner.entries[idx];
    let time = inner.clock.system_time();
    let started = inner.clock.now();
    let raw = match std::panic::catch_unwind(AssertUnwindSafe(|| entry.check.call())) {
        Err(_) => CheckResult::fail(PANICKED),
        Ok(fut) => {
            let guarded = AssertUnwindSafe(fut).catch_unwind();
            match inner.clock.timeout(entry.timeout, guarded).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => CheckResult::fail(PANICKED),
                Err(_) => CheckResult::fail(format!(
                    "timed out after {}",
                    humantime::format_duration(entry.timeout)
                )),
            }
        }
    };
    let now = inner.clock.now();
    let duration = now.saturating_duration_since(started);

    let (reading, change, log) = {
        let mut state = entry.state();
        let previous = state.reading.as_ref().map(|r| entry.effective(r.status));
        let log = log_decision(&mut state, (raw.status, raw.output.clone()));
        let reading = apply_thresholds(entry, &mut state, raw, time, now, duration);
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
    at: Instant,
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
        at,
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
