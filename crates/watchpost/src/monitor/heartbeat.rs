//! Heartbeats: a dead-man's switch for cron jobs and worker loops, on the
//! healthchecks.io model, inside the process.

use std::fmt;
use std::future::{ready, Future};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::{Clock, Tick, TICK};
use crate::alert::{format_duration, Alert, Alerter, ConfigError, Severity};
use crate::health::{Check, CheckResult};

const LOG_TARGET: &str = "watchpost::monitor::heartbeat";

/// A dead-man's switch: a job reports each success, and silence past a
/// deadline is an incident.
///
/// The silent failures are the ones that hurt: the nightly backup that
/// stopped running three weeks ago, the queue consumer stuck on a lock. A
/// heartbeat turns "nothing happened" into an alert and a failing health
/// check. It follows the [healthchecks.io](https://healthchecks.io/docs/)
/// model:
///
/// - **New**: no success yet. Down if none comes within `period + grace`
///   of the heartbeat's creation (roughly, of the process's start).
/// - **Up**: the last success at `t`; the next one is due by
///   `t + period`, and the heartbeat is down after `t + period + grace`.
///   Between the two it is **late**, still passing.
/// - **Started**: [`start`](Self::start) (or [`run`](Self::run)) began a
///   run, which must end, [`beat`](Self::beat) or [`fail`](Self::fail),
///   within [`max_run_time`](HeartbeatBuilder::max_run_time) of its start
///   (default: the grace), else the heartbeat is down ("overdue"). A run
///   started on time may finish after the regular deadline.
/// - **Down**: a deadline was missed, a run is overdue, or
///   [`fail`](Self::fail) reported a failure. It stays down until the
///   next success: a late `start` doesn't hide a missed run.
///
/// Going down fires one incident keyed `heartbeat:<name>` through the
/// [alerter](HeartbeatBuilder::alerter), if one is attached ("Heartbeat
/// nightly-backup missed", with when the last success was and what was
/// expected); the next [`beat`](Self::beat) resolves it. Deadlines are
/// checked once a second on the monitor thread, so an incident fires at
/// most a second late, even when nothing else happens. Without an
/// alerter, the heartbeat only answers [`check`](Self::check) and
/// [`state`](Self::state).
///
/// [`check`](Self::check) gives a health check that fails while the
/// heartbeat is down: register it as a liveness check for a worker loop
/// the process can't work without, or in `/healthz` only for a cron job.
///
/// Cheap to clone (an `Arc`); clones share one state. Reporting takes a
/// short lock, never blocks on I/O and never panics. The heartbeat stops
/// being watched when its last clone (including the one inside its
/// health check) is dropped; an open incident then stays open.
///
/// Cron-expression schedules are not supported: give the longest gap
/// expected between two successes as the period.
///
/// # Examples
///
/// A worker loop on a Tokio interval, alerting when it stops succeeding,
/// with a liveness check:
///
/// ```
/// use std::time::Duration;
/// use watchpost::alert::{Alerter, LogSink};
/// use watchpost::health::{HealthChecks, Probe};
/// use watchpost::monitor::Heartbeat;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::builder().sink(LogSink::new()).build()?;
/// let heartbeat = Heartbeat::builder("invoice-sync", Duration::from_secs(60))
///     .grace(Duration::from_secs(30))
///     .alerter(&alerter)
///     .build()?;
///
/// let health = HealthChecks::builder()
///     .liveness("invoice-sync", heartbeat.check())
///     .build()?;
///
/// let hb = heartbeat.clone();
/// tokio::spawn(async move {
///     let mut every = tokio::time::interval(Duration::from_secs(60));
///     loop {
///         every.tick().await;
///         let run = hb.run(); // started; dropped without success = failed
///         match sync_invoices().await {
///             Ok(()) => run.success(),
///             Err(error) => run.fail(error),
///         }
///     }
/// });
///
/// // Passing: a new heartbeat has until its first deadline.
/// assert_eq!(health.evaluate(Probe::Liveness).await.http_status(), 200);
/// # Ok(()) }
/// # async fn sync_invoices() -> Result<(), std::io::Error> { Ok(()) }
/// ```
///
/// A nightly job, without an alerter (the health check still works):
///
/// ```
/// use std::time::Duration;
/// use watchpost::monitor::{Heartbeat, HeartbeatState};
///
/// let backup = Heartbeat::new(
///     "nightly-backup",
///     Duration::from_secs(24 * 3600), // expected once a day
///     Duration::from_secs(3600),      // an hour late is still fine
/// );
/// // ... after the backup succeeded:
/// backup.beat();
/// assert_eq!(backup.state(), HeartbeatState::Up);
/// ```
#[derive(Clone)]
pub struct Heartbeat {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    key: String,
    period: Duration,
    grace: Duration,
    max_run_time: Duration,
    severity: Severity,
    clock: Clock,
    alerter: Option<Alerter>,
    created: Stamp,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_success: Option<Stamp>,
    /// The run in progress, if any.
    started: Option<Stamp>,
    /// Latched once down (and the incident fired), until the next success.
    down: Option<Cause>,
}

/// A moment on both clocks: monotonic for deadlines, wall for messages.
#[derive(Clone, Copy)]
struct Stamp {
    at: Instant,
    wall: SystemTime,
}

impl Stamp {
    fn now(clock: &Clock) -> Self {
        Self {
            at: clock.now(),
            wall: clock.system_time(),
        }
    }
}

#[derive(Clone)]
enum Cause {
    /// No success by `period + grace` after the last one (or creation).
    Missed,
    /// A run started and didn't end within `max_run_time`.
    Overdue { started: Stamp },
    /// [`Heartbeat::fail`], with the reason.
    Failed { reason: String },
}

/// Where a [`Heartbeat`] stands; see its docs for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeartbeatState {
    /// No success yet, and the first deadline hasn't passed.
    New,
    /// The last success is less than a period old.
    Up,
    /// The next success is overdue but within the grace (still passing).
    Late,
    /// A run started and hasn't ended, within its maximum run time.
    Started,
    /// A deadline was missed, a run is overdue, or a failure was reported;
    /// until the next success.
    Down,
}

impl HeartbeatState {
    /// The lowercase name: `new`, `up`, `late`, `started`, `down`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Up => "up",
            Self::Late => "late",
            Self::Started => "started",
            Self::Down => "down",
        }
    }
}

impl fmt::Display for HeartbeatState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("Heartbeat")
            .field("name", &s.name)
            .field("period", &s.period)
            .field("grace", &s.grace)
            .field("max_run_time", &s.max_run_time)
            .field("alerts", &s.alerter.is_some())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Heartbeat {
    /// A heartbeat expecting a success every `period`, down `grace` after
    /// a success is due. On the system clock, without an alerter: use
    /// [`builder`](Self::builder) to alert, or to set anything else.
    ///
    /// A zero `period` is raised to one second (the builder rejects it).
    pub fn new(name: impl Into<String>, period: Duration, grace: Duration) -> Self {
        let period = if period.is_zero() { TICK } else { period };
        Self::builder(name, period).grace(grace).finish()
    }

    /// A builder for a heartbeat expecting a success every `period`.
    pub fn builder(name: impl Into<String>, period: Duration) -> HeartbeatBuilder {
        HeartbeatBuilder {
            name: name.into(),
            period,
            grace: None,
            max_run_time: None,
            severity: Severity::Error,
            clock: None,
            alerter: None,
        }
    }

    /// Reports a success: the heartbeat is up, the run in progress (if
    /// any) is over, and an open incident is resolved.
    pub fn beat(&self) {
        let s = &*self.shared;
        let now = Stamp::now(&s.clock);
        let mut state = s.lock();
        state.last_success = Some(now);
        state.started = None;
        if state.down.take().is_some() {
            tracing::info!(target: LOG_TARGET, heartbeat = %s.name, "heartbeat back up");
            if let Some(alerter) = &s.alerter {
                alerter.resolve(&s.key);
            }
        }
    }

    /// Reports that a run started: it must end, with [`beat`](Self::beat)
    /// or [`fail`](Self::fail), within the maximum run time. A second
    /// `start` before the run ends restarts its timer (one run is tracked
    /// at a time). A start doesn't count as a success: a heartbeat that
    /// is down stays down.
    ///
    /// [`run`](Self::run) does this and reports the end for you.
    pub fn start(&self) {
        let s = &*self.shared;
        let now = Stamp::now(&s.clock);
        let mut state = s.lock();
        // A deadline that passed unnoticed (between two ticks, or with no
        // alerter to tick for) counts before this start does.
        s.evaluate(&mut state, now.at);
        state.started = Some(now);
    }

    /// Reports a failure: the heartbeat is down at once, and an incident
    /// fires with `reason` ("Heartbeat nightly-backup failed"), unless one
    /// is already open. The next [`beat`](Self::beat) resolves it.
    ///
    /// `reason` is anything printable: a `&str`, an error (an empty one
    /// reads "no reason given").
    pub fn fail(&self, reason: impl fmt::Display) {
        let s = &*self.shared;
        let mut reason = reason.to_string();
        if reason.trim().is_empty() {
            reason = "no reason given".to_owned();
        }
        let now = Stamp::now(&s.clock);
        let mut state = s.lock();
        s.go_down(&mut state, Cause::Failed { reason }, now);
    }

    /// Starts a run and returns its guard: call
    /// [`success`](HeartbeatRun::success) or [`fail`](HeartbeatRun::fail)
    /// on it when the work ends. A guard dropped without either (an early
    /// `return`, a `?`, a panic) reports the run failed.
    pub fn run(&self) -> HeartbeatRun {
        self.start();
        HeartbeatRun {
            heartbeat: self.clone(),
            done: false,
        }
    }

    /// A health check that fails while the heartbeat is
    /// [down](HeartbeatState::Down), saying why ("missed: last success
    /// 2h 3m ago, expected every 1h (+5m grace)", "failed: disk full"), and
    /// passes otherwise. Its observed value is the number of seconds since
    /// the last success, when there was one.
    pub fn check(&self) -> HeartbeatCheck {
        HeartbeatCheck {
            heartbeat: self.clone(),
        }
    }

    /// Where the heartbeat stands now.
    pub fn state(&self) -> HeartbeatState {
        let s = &*self.shared;
        let now = s.clock.now();
        let state = s.lock();
        s.classify(&state, now)
    }

    /// Whether the heartbeat is [down](HeartbeatState::Down).
    pub fn is_down(&self) -> bool {
        self.state() == HeartbeatState::Down
    }

    /// When the last success was reported, if ever (wall-clock time of the
    /// heartbeat's clock).
    pub fn last_success(&self) -> Option<SystemTime> {
        self.shared.lock().last_success.map(|l| l.wall)
    }

    /// The name, as given.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The expected time between two successes.
    pub fn period(&self) -> Duration {
        self.shared.period
    }

    /// How late a success may be before the heartbeat is down.
    pub fn grace(&self) -> Duration {
        self.shared.grace
    }

    /// How long a started run may take.
    pub fn max_run_time(&self) -> Duration {
        self.shared.max_run_time
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The deadline in force and what missing it means; `None`: never (a
    /// period too long to add to an `Instant`).
    fn deadline(&self, state: &State) -> (Option<Instant>, Cause) {
        match state.started {
            Some(started) => (
                started.at.checked_add(self.max_run_time),
                Cause::Overdue { started },
            ),
            None => {
                let base = state.last_success.unwrap_or(self.created).at;
                let deadline = base
                    .checked_add(self.period)
                    .and_then(|due| due.checked_add(self.grace));
                (deadline, Cause::Missed)
            }
        }
    }

    /// Why the heartbeat is down at `now`, if it is (without latching).
    fn down_cause(&self, state: &State, now: Instant) -> Option<Cause> {
        if let Some(cause) = &state.down {
            return Some(cause.clone());
        }
        match self.deadline(state) {
            (Some(deadline), cause) if now >= deadline => Some(cause),
            _ => None,
        }
    }

    fn classify(&self, state: &State, now: Instant) -> HeartbeatState {
        if self.down_cause(state, now).is_some() {
            return HeartbeatState::Down;
        }
        if state.started.is_some() {
            return HeartbeatState::Started;
        }
        let base = state.last_success.unwrap_or(self.created).at;
        let late = base.checked_add(self.period).is_some_and(|due| now >= due);
        match (late, state.last_success) {
            (true, _) => HeartbeatState::Late,
            (false, None) => HeartbeatState::New,
            (false, Some(_)) => HeartbeatState::Up,
        }
    }

    /// Latches a missed deadline or an overdue run (firing the incident).
    fn evaluate(&self, state: &mut State, now: Instant) {
        if state.down.is_some() {
            return;
        }
        if let Some(cause) = self.down_cause(state, now) {
            let at = Stamp {
                at: now,
                wall: self.clock.system_time(),
            };
            self.go_down(state, cause, at);
        }
    }

    /// Marks the heartbeat down and fires the incident, unless it was down
    /// already (then only the cause is updated). The alerter is called
    /// under the lock, so a `beat` racing with a tick can't resolve before
    /// the fire it follows.
    fn go_down(&self, state: &mut State, cause: Cause, now: Stamp) {
        state.started = None;
        let was_down = state.down.replace(cause.clone()).is_some();
        if was_down {
            return;
        }
        let alert = self.alert(state, &cause, now);
        tracing::warn!(
            target: LOG_TARGET,
            heartbeat = %self.name,
            detail = alert.detail_text().unwrap_or_default(),
            "{}",
            alert.title(),
        );
        if let Some(alerter) = &self.alerter {
            alerter.fire(&self.key, alert);
        }
    }

    fn alert(&self, state: &State, cause: &Cause, now: Stamp) -> Alert {
        let last = self.last_success_line(state, now.at, true);
        let expected = self.expected_line();
        let (what, detail) = match cause {
            Cause::Missed => ("missed", format!("{last}, {expected}")),
            Cause::Overdue { started } => (
                "stuck",
                format!(
                    "run started {} ago ({}) has not finished, allowed {}; {last}",
                    format_duration(now.at.saturating_duration_since(started.at)),
                    wall_clock(started.wall),
                    format_duration(self.max_run_time),
                ),
            ),
            Cause::Failed { reason } => ("failed", format!("{reason}\n{last}, {expected}")),
        };
        Alert::new(self.severity, format!("Heartbeat {} {what}", self.name))
            .detail(detail)
            .label("heartbeat", &*self.name)
    }

    /// The health check's result at `now`.
    fn check_result(&self, now: Instant) -> CheckResult {
        let state = self.lock();
        let last = self.last_success_line(&state, now, false);
        let result = match self.down_cause(&state, now) {
            Some(Cause::Missed) => {
                CheckResult::fail(format!("missed: {last}, {}", self.expected_line()))
            }
            Some(Cause::Overdue { started }) => CheckResult::fail(format!(
                "overdue: run started {} ago has not finished, allowed {}",
                format_duration(now.saturating_duration_since(started.at)),
                format_duration(self.max_run_time),
            )),
            Some(Cause::Failed { reason }) => CheckResult::fail(format!("failed: {reason}")),
            None => {
                let output = match (self.classify(&state, now), state.started) {
                    (HeartbeatState::Late, _) => {
                        format!("late: {last}, {}", self.expected_line())
                    }
                    (_, Some(started)) => format!(
                        "started {} ago; {last}",
                        format_duration(now.saturating_duration_since(started.at))
                    ),
                    _ => last,
                };
                CheckResult::pass().with_output(output)
            }
        };
        match state.last_success {
            Some(l) => result.observed(now.saturating_duration_since(l.at).as_secs(), "s"),
            None => result,
        }
    }

    /// "last success 2h 3m ago", or "no success since startup 1h 5m ago",
    /// with the wall-clock time if `wall`.
    fn last_success_line(&self, state: &State, now: Instant, wall: bool) -> String {
        let (head, stamp) = match state.last_success {
            Some(l) => ("last success", l),
            None => ("no success since startup", self.created),
        };
        let ago = format_duration(now.saturating_duration_since(stamp.at));
        if wall {
            format!("{head} {ago} ago ({})", wall_clock(stamp.wall))
        } else {
            format!("{head} {ago} ago")
        }
    }

    /// "expected every 1h (+5m grace)".
    fn expected_line(&self) -> String {
        let every = format_duration(self.period);
        if self.grace.is_zero() {
            format!("expected every {every}")
        } else {
            format!(
                "expected every {every} (+{} grace)",
                format_duration(self.grace)
            )
        }
    }
}

impl Tick for Shared {
    fn tick(&self, now: Instant) {
        let mut state = self.lock();
        self.evaluate(&mut state, now);
    }
}

/// Configures a [`Heartbeat`]; from [`Heartbeat::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::alert::{Alerter, LogSink, Severity};
/// use watchpost::monitor::Heartbeat;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::builder().sink(LogSink::new()).build()?;
/// let backup = Heartbeat::builder("nightly-backup", Duration::from_secs(24 * 3600))
///     .grace(Duration::from_secs(3600))
///     .max_run_time(Duration::from_secs(3 * 3600)) // a backup takes a while
///     .severity(Severity::Critical)
///     .alerter(&alerter)
///     .build()?;
/// # let _ = backup;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct HeartbeatBuilder {
    name: String,
    period: Duration,
    grace: Option<Duration>,
    max_run_time: Option<Duration>,
    severity: Severity,
    clock: Option<Clock>,
    alerter: Option<Alerter>,
}

impl fmt::Debug for HeartbeatBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatBuilder")
            .field("name", &self.name)
            .field("period", &self.period)
            .field("grace", &self.grace)
            .field("max_run_time", &self.max_run_time)
            .field("severity", &self.severity)
            .field("clock", &self.clock)
            .field("alerts", &self.alerter.is_some())
            .finish()
    }
}

impl HeartbeatBuilder {
    /// How late a success may be before the heartbeat is down (default: a
    /// tenth of the period). Cover the job's usual jitter: a cron job
    /// started a little late, a slow run.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// How long a run may take between [`start`](Heartbeat::start) and its
    /// end (default: the grace, or the period if the grace is zero). Past
    /// it, the run is overdue and the heartbeat down. Set it for jobs that
    /// take longer than the grace.
    pub fn max_run_time(mut self, max: Duration) -> Self {
        self.max_run_time = Some(max);
        self
    }

    /// Sends an incident through `alerter` when the heartbeat goes down,
    /// and resolves it on the next success. Without one, nothing is sent:
    /// the state and the health check still work.
    pub fn alerter(mut self, alerter: &Alerter) -> Self {
        self.alerter = Some(alerter.clone());
        self
    }

    /// The incident's severity (default [`Severity::Error`]).
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// The clock deadlines are measured on (default: the alerter's, or
    /// [`Clock::system`] without one). Tests give the alerter a
    /// [`ManualClock`](super::ManualClock)'s.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the heartbeat. With an alerter, its deadlines are checked
    /// once a second from now on (on the monitor thread, or by
    /// [`ManualClock::advance`](super::ManualClock::advance)).
    ///
    /// # Errors
    ///
    /// A zero period or maximum run time.
    pub fn build(self) -> Result<Heartbeat, ConfigError> {
        if self.period.is_zero() {
            return Err(ConfigError::invalid("period", "must be greater than zero"));
        }
        if self.max_run_time.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::invalid(
                "max_run_time",
                "must be greater than zero",
            ));
        }
        Ok(self.finish())
    }

    fn finish(self) -> Heartbeat {
        let grace = self.grace.unwrap_or(self.period / 10);
        let max_run_time =
            self.max_run_time
                .unwrap_or(if grace.is_zero() { self.period } else { grace });
        let clock = self
            .clock
            .or_else(|| self.alerter.as_ref().map(|a| a.clock().clone()))
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            key: format!("heartbeat:{}", self.name),
            name: self.name,
            period: self.period,
            grace,
            max_run_time,
            severity: self.severity,
            created: Stamp::now(&clock),
            clock,
            alerter: self.alerter,
            state: Mutex::new(State::default()),
        });
        // Only alerting needs ticks: without an alerter, states are
        // computed when asked.
        if let Some(alerter) = &shared.alerter {
            let weak: Weak<dyn Tick> = Arc::downgrade(&shared) as Weak<dyn Tick>;
            alerter.watch(&shared.clock, weak);
        }
        Heartbeat { shared }
    }
}

/// One run of a [`Heartbeat`]'s job, from [`Heartbeat::run`]: end it with
/// [`success`](Self::success) or [`fail`](Self::fail).
///
/// Dropped without either, it reports the run failed: "dropped without
/// success", or "panicked" when dropped while the thread unwinds from a
/// panic. So an early `return`, a `?` or a panic can't leave the heartbeat
/// waiting for a run that is over.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::monitor::{Heartbeat, HeartbeatState};
///
/// fn import(heartbeat: &Heartbeat, line: &str) -> Result<u32, std::num::ParseIntError> {
///     let run = heartbeat.run();
///     let count = line.trim().parse()?; // an error drops `run`: reported failed
///     run.success();
///     Ok(count)
/// }
///
/// let heartbeat = Heartbeat::new("import", Duration::from_secs(3600), Duration::from_secs(300));
/// assert!(import(&heartbeat, "42").is_ok());
/// assert_eq!(heartbeat.state(), HeartbeatState::Up);
/// assert!(import(&heartbeat, "forty-two").is_err());
/// assert_eq!(heartbeat.state(), HeartbeatState::Down);
/// ```
#[must_use = "a run dropped at once reports a failure: keep it until the work is done"]
pub struct HeartbeatRun {
    heartbeat: Heartbeat,
    done: bool,
}

impl fmt::Debug for HeartbeatRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatRun")
            .field("heartbeat", &self.heartbeat.shared.name)
            .field("done", &self.done)
            .finish()
    }
}

impl HeartbeatRun {
    /// The run succeeded: [`Heartbeat::beat`].
    pub fn success(mut self) {
        self.done = true;
        self.heartbeat.beat();
    }

    /// The run failed: [`Heartbeat::fail`] with `reason`.
    pub fn fail(mut self, reason: impl fmt::Display) {
        self.done = true;
        self.heartbeat.fail(reason);
    }

    /// The heartbeat this run reports to.
    pub fn heartbeat(&self) -> &Heartbeat {
        &self.heartbeat
    }
}

impl Drop for HeartbeatRun {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let reason = if std::thread::panicking() {
            "run panicked (dropped without success while unwinding)"
        } else {
            "run dropped without success"
        };
        self.heartbeat.fail(reason);
    }
}

/// The health check of a [`Heartbeat`], from [`Heartbeat::check`]: fails
/// while the heartbeat is down, passes otherwise.
///
/// It reads the heartbeat's state (no I/O): cheap enough for any probe.
#[derive(Clone)]
pub struct HeartbeatCheck {
    heartbeat: Heartbeat,
}

impl fmt::Debug for HeartbeatCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatCheck")
            .field("heartbeat", &self.heartbeat.shared.name)
            .finish()
    }
}

impl Check for HeartbeatCheck {
    fn check(&self) -> impl Future<Output = CheckResult> + Send {
        let s = &*self.heartbeat.shared;
        ready(s.check_result(s.clock.now()))
    }
}

/// `2024-05-01 03:00:12 UTC`, clamped to what can be written (humantime
/// panics before 1970 and fails after 9999).
pub(super) fn wall_clock(time: SystemTime) -> String {
    const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let max = SystemTime::UNIX_EPOCH + Duration::from_secs(MAX_SECS);
    let time = time.clamp(SystemTime::UNIX_EPOCH, max);
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    format!(
        "{} UTC",
        rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Status;
    use crate::monitor::ManualClock;

    const MIN: Duration = Duration::from_secs(60);

    fn heartbeat(manual: &ManualClock) -> Heartbeat {
        Heartbeat::builder("job", 10 * MIN)
            .grace(MIN)
            .clock(manual.clock())
            .build()
            .unwrap()
    }

    fn check(hb: &Heartbeat) -> CheckResult {
        hb.shared.check_result(hb.shared.clock.now())
    }

    #[test]
    fn heartbeats_and_runs_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Heartbeat>();
        send_sync::<HeartbeatRun>();
        send_sync::<HeartbeatCheck>();
    }

    #[test]
    fn states_follow_the_deadlines() {
        let manual = ManualClock::new();
        let hb = heartbeat(&manual);
        assert_eq!(hb.state(), HeartbeatState::New);
        manual.advance(10 * MIN);
        assert_eq!(hb.state(), HeartbeatState::Late);
        manual.advance(MIN - Duration::from_secs(1));
        assert_eq!(hb.state(), HeartbeatState::Late);
        manual.advance(Duration::from_secs(1));
        assert_eq!(hb.state(), HeartbeatState::Down);
        hb.beat();
        assert_eq!(hb.state(), HeartbeatState::Up);
        hb.start();
        assert_eq!(hb.state(), HeartbeatState::Started);
        manual.advance(MIN);
        assert_eq!(hb.state(), HeartbeatState::Down, "overdue run");
    }

    #[test]
    fn a_late_start_does_not_hide_a_missed_deadline() {
        let manual = ManualClock::new();
        let hb = heartbeat(&manual); // no alerter: nothing ticks
        manual.advance(20 * MIN);
        hb.start();
        assert_eq!(hb.state(), HeartbeatState::Down);
        hb.beat();
        assert_eq!(hb.state(), HeartbeatState::Up);
    }

    #[test]
    fn check_output_says_why() {
        let manual = ManualClock::new();
        let hb = heartbeat(&manual);
        assert_eq!(check(&hb).status(), Status::Pass);
        assert_eq!(check(&hb).observed_value(), None);
        hb.beat();
        manual.advance(Duration::from_secs(2 * 3600) + 3 * MIN);
        let r = check(&hb);
        assert_eq!(r.status(), Status::Fail);
        assert_eq!(
            r.output(),
            Some("missed: last success 2h 3m ago, expected every 10m (+1m grace)")
        );
        assert_eq!(r.observed_value(), Some(&serde_json::json!(7380)));
        assert_eq!(r.observed_unit(), Some("s"));
        hb.fail("disk full");
        assert_eq!(check(&hb).output(), Some("failed: disk full"));
        hb.beat();
        assert_eq!(check(&hb).status(), Status::Pass);
    }

    #[test]
    fn zero_periods_are_clamped_by_new_and_rejected_by_the_builder() {
        let hb = Heartbeat::new("x", Duration::ZERO, Duration::ZERO);
        assert_eq!(hb.period(), TICK);
        assert_eq!(hb.max_run_time(), TICK, "zero grace: runs get the period");
        let err = Heartbeat::builder("x", Duration::ZERO).build().unwrap_err();
        assert_eq!(err.name(), Some("period"));
        let err = Heartbeat::builder("x", MIN)
            .max_run_time(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.name(), Some("max_run_time"));
    }

    #[test]
    fn huge_periods_never_fall_due() {
        let manual = ManualClock::new();
        let hb = Heartbeat::builder("x", Duration::MAX)
            .clock(manual.clock())
            .build()
            .unwrap();
        manual.advance(MIN);
        assert_eq!(hb.state(), HeartbeatState::New);
        assert_eq!(check(&hb).status(), Status::Pass);
    }

    #[test]
    fn wall_clock_reads_like_a_log_line() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 + 3_723);
        assert_eq!(wall_clock(t), "1970-01-02 01:02:03 UTC");
        assert_eq!(
            wall_clock(SystemTime::UNIX_EPOCH - MIN),
            "1970-01-01 00:00:00 UTC"
        );
    }
}
