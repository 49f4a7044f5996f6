//! The threshold watcher: an incident when a gauge passes a mark, with
//! hysteresis and a minimum duration.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::heartbeat::wall_clock;
use super::{Clock, Tick};
use crate::alert::{format_duration, Alert, Alerter, ConfigError, Severity};

const LOG_TARGET: &str = "watchpost::monitor::threshold";

/// No value observed yet (NaN observations are never stored).
const NO_VALUE: u64 = f64::NAN.to_bits();

const IDLE: u8 = 0;
const PENDING: u8 = 1;
const FIRING: u8 = 2;

type Gauge = Box<dyn Fn() -> f64 + Send + Sync>;

/// Fires an incident when a gauge passes a mark, and resolves it once the
/// gauge is back past a second mark: queue depth, pool saturation, free
/// disk, anything that is a number.
///
/// - **Two marks** (hysteresis). With [`fire_above`](ThresholdWatcherBuilder::fire_above)`(1000)`
///   and [`resolve_below`](ThresholdWatcherBuilder::resolve_below)`(100)`,
///   the incident fires when the value goes above 1000 and stays open
///   while it is between the marks; it resolves below 100. A value hovering
///   around one mark can't flap. Without a resolve mark, it is the fire
///   mark. For gauges where low is bad (free disk, idle connections), use
///   [`fire_below`](ThresholdWatcherBuilder::fire_below) and
///   [`resolve_above`](ThresholdWatcherBuilder::resolve_above).
/// - **A minimum duration.** With
///   [`for_at_least`](ThresholdWatcherBuilder::for_at_least), the value
///   must stay past the fire mark that long before anything fires: a
///   brief spike sends nothing.
/// - **One incident**, keyed `threshold:<name>`: "queue-depth at 1,240
///   jobs (above 1,000)", with since when and the resolve mark; then one
///   "resolved" message.
///
/// Feed it either way:
///
/// - **Push**: [`observe`](Self::observe) where the value changes (after
///   an enqueue, in a metrics callback). It costs an atomic store and a
///   comparison when nothing changes; the rare transitions take a lock
///   with `try_lock`, never waiting: a busy lock skips to the next tick.
/// - **Poll**: [`gauge`](ThresholdWatcherBuilder::gauge) gives a closure
///   sampled once a second on the monitor thread.
///
/// Either way the rules are also evaluated once a second, so a value
/// observed once and never again still fires after the minimum duration.
/// NaN values are ignored (and logged once).
///
/// Cheap to clone (an `Arc`); the watcher stops (nothing sampled, nothing
/// sent) when its last clone is dropped, and an open incident stays open.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use watchpost::alert::{Alerter, LogSink};
/// use watchpost::monitor::ThresholdWatcher;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::builder().sink(LogSink::new()).build()?;
///
/// // Push: report the depth where it changes.
/// let queue = ThresholdWatcher::builder("queue-depth", &alerter)
///     .fire_above(1000.0)
///     .resolve_below(100.0)
///     .for_at_least(Duration::from_secs(60))
///     .unit("jobs")
///     .build()?;
/// queue.observe(12.0);
/// assert!(!queue.is_firing());
///
/// // Poll: free disk, sampled once a second; low is bad.
/// let free_gb = Arc::new(AtomicUsize::new(120));
/// let free = free_gb.clone();
/// let disk = ThresholdWatcher::builder("disk-free", &alerter)
///     .gauge(move || free.load(Ordering::Relaxed) as f64)
///     .fire_below(5.0)
///     .resolve_above(10.0)
///     .unit("GB")
///     .build()?;
/// # let _ = disk;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ThresholdWatcher {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    key: String,
    rule: Rule,
    for_at_least: Duration,
    severity: Severity,
    unit: Option<String>,
    clock: Clock,
    alerter: Alerter,
    gauge: Option<Gauge>,
    /// The last value's bits, [`NO_VALUE`] before the first.
    value: AtomicU64,
    /// A copy of `state.phase`'s kind, written under the lock, read by the
    /// lock-free path of `observe`.
    phase: AtomicU8,
    state: Mutex<State>,
    nan_logged: AtomicBool,
}

struct State {
    phase: Phase,
}

#[derive(Clone, Copy)]
enum Phase {
    Idle,
    /// Past the fire mark since then, waiting for `for_at_least`.
    Pending {
        since: Instant,
        wall: SystemTime,
    },
    Firing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Above,
    Below,
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    direction: Direction,
    fire: f64,
    resolve: f64,
}

impl Rule {
    /// Past the fire mark.
    fn breached(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value > self.fire,
            Direction::Below => value < self.fire,
        }
    }

    /// Back past the resolve mark.
    fn recovered(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value < self.resolve,
            Direction::Below => value > self.resolve,
        }
    }

    fn word(&self) -> (&'static str, &'static str) {
        match self.direction {
            Direction::Above => ("above", "below"),
            Direction::Below => ("below", "above"),
        }
    }
}

impl fmt::Debug for ThresholdWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("ThresholdWatcher")
            .field("name", &s.name)
            .field("rule", &s.rule)
            .field("for_at_least", &s.for_at_least)
            .field("unit", &s.unit)
            .field("gauge", &s.gauge.is_some())
            .field("value", &self.value())
            .field("firing", &self.is_firing())
            .finish_non_exhaustive()
    }
}

impl ThresholdWatcher {
    /// A builder for a watcher named `name` (in messages and the incident
    /// key `threshold:<name>`), alerting through `alerter`. Set one of
    /// [`fire_above`](ThresholdWatcherBuilder::fire_above) and
    /// [`fire_below`](ThresholdWatcherBuilder::fire_below).
    pub fn builder(name: impl Into<String>, alerter: &Alerter) -> ThresholdWatcherBuilder {
        ThresholdWatcherBuilder {
            name: name.into(),
            alerter: alerter.clone(),
            fire_above: None,
            fire_below: None,
            resolve_below: None,
            resolve_above: None,
            for_at_least: Duration::ZERO,
            severity: Severity::Warning,
            unit: None,
            clock: alerter.clock().clone(),
            gauge: None,
        }
    }

    /// Records the gauge's current value and evaluates the rules.
    ///
    /// Cheap enough for hot paths: while the value stays on the same side
    /// of the marks (under the fire mark, still past it, or not yet back
    /// past the resolve mark) it is an atomic store and a comparison. A
    /// transition takes the lock if it is free; if another thread holds
    /// it, the next tick (within a second) evaluates the latest value.
    /// Never blocks, never panics. NaN is ignored.
    pub fn observe(&self, value: f64) {
        let s = &*self.shared;
        if !s.store(value) {
            return;
        }
        // Nothing to do while the value keeps the phase as it is; a pending
        // wait that is over is noticed by the next tick.
        let quiet = match s.phase.load(Ordering::Acquire) {
            IDLE => !s.rule.breached(value),
            PENDING => s.rule.breached(value),
            _ => !s.rule.recovered(value),
        };
        if quiet {
            return;
        }
        let mut state = match s.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        s.evaluate(&mut state, s.clock.now());
    }

    /// The last value observed or sampled, if any.
    pub fn value(&self) -> Option<f64> {
        self.shared.value()
    }

    /// Whether the incident is open.
    pub fn is_firing(&self) -> bool {
        self.shared.phase.load(Ordering::Acquire) == FIRING
    }

    /// The name, as given.
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn value(&self) -> Option<f64> {
        let value = f64::from_bits(self.value.load(Ordering::Relaxed));
        (!value.is_nan()).then_some(value)
    }

    /// Stores `value`; `false` (and logged once) for NaN.
    fn store(&self, value: f64) -> bool {
        if value.is_nan() {
            if !self.nan_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: LOG_TARGET,
                    watcher = %self.name,
                    "threshold watcher got NaN; NaN values are ignored (logged once)"
                );
            }
            return false;
        }
        self.value.store(value.to_bits(), Ordering::Relaxed);
        true
    }

    fn set_phase(&self, state: &mut State, phase: Phase) {
        let kind = match phase {
            Phase::Idle => IDLE,
            Phase::Pending { .. } => PENDING,
            Phase::Firing => FIRING,
        };
        state.phase = phase;
        self.phase.store(kind, Ordering::Release);
    }

    /// Moves the state machine on with the latest value. The alerter is
    /// called under the lock, so fire and resolve can't be reordered.
    fn evaluate(&self, state: &mut State, now: Instant) {
        let Some(value) = self.value() else {
            return;
        };
        match state.phase {
            Phase::Idle if self.rule.breached(value) => {
                let wall = self.clock.system_time();
                if self.for_at_least.is_zero() {
                    self.fire(state, value, wall, Duration::ZERO);
                } else {
                    self.set_phase(state, Phase::Pending { since: now, wall });
                }
            }
            Phase::Pending { since, wall } => {
                if !self.rule.breached(value) {
                    self.set_phase(state, Phase::Idle);
                } else {
                    let lasted = now.saturating_duration_since(since);
                    if lasted >= self.for_at_least {
                        self.fire(state, value, wall, lasted);
                    }
                }
            }
            Phase::Firing if self.rule.recovered(value) => {
                self.alerter.resolve(&self.key);
                self.set_phase(state, Phase::Idle);
            }
            _ => {}
        }
    }

    fn fire(&self, state: &mut State, value: f64, since: SystemTime, lasted: Duration) {
        let (past, back) = self.rule.word();
        let title = format!(
            "{} at {} ({past} {})",
            self.name,
            self.with_unit(value),
            format_number(self.rule.fire)
        );
        let lasted = if lasted >= Duration::from_secs(1) {
            format!(" ({})", format_duration(lasted))
        } else {
            String::new()
        };
        let detail = format!(
            "{past} {} since {}{lasted}; resolves {back} {}",
            self.with_unit(self.rule.fire),
            wall_clock(since),
            self.with_unit(self.rule.resolve),
        );
        let alert = Alert::new(self.severity, title)
            .detail(detail)
            .label("threshold", &*self.name);
        self.alerter.fire(&self.key, alert);
        self.set_phase(state, Phase::Firing);
    }

    fn with_unit(&self, value: f64) -> String {
        let number = format_number(value);
        match self.unit.as_deref() {
            None | Some("") => number,
            Some("%") => format!("{number}%"),
            Some(unit) => format!("{number} {unit}"),
        }
    }
}

impl Tick for Shared {
    fn tick(&self, now: Instant) {
        if let Some(gauge) = &self.gauge {
            // A panic here is caught and logged by the ticker.
            self.store(gauge());
        }
        let mut state = self.lock();
        self.evaluate(&mut state, now);
    }
}

/// Configures a [`ThresholdWatcher`]; from [`ThresholdWatcher::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::alert::{Alerter, LogSink, Severity};
/// use watchpost::monitor::ThresholdWatcher;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::builder().sink(LogSink::new()).build()?;
/// # let pool_in_use = || 3.0; let pool_size = 10.0;
/// let pool = ThresholdWatcher::builder("db-pool", &alerter)
///     .gauge(move || 100.0 * pool_in_use() / pool_size)
///     .fire_above(90.0)
///     .resolve_below(70.0)
///     .for_at_least(Duration::from_secs(120))
///     .unit("%")
///     .severity(Severity::Error)
///     .build()?;
/// # let _ = pool;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ThresholdWatcherBuilder {
    name: String,
    alerter: Alerter,
    fire_above: Option<f64>,
    fire_below: Option<f64>,
    resolve_below: Option<f64>,
    resolve_above: Option<f64>,
    for_at_least: Duration,
    severity: Severity,
    unit: Option<String>,
    clock: Clock,
    gauge: Option<Gauge>,
}

impl fmt::Debug for ThresholdWatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThresholdWatcherBuilder")
            .field("name", &self.name)
            .field("fire_above", &self.fire_above)
            .field("fire_below", &self.fire_below)
            .field("resolve_below", &self.resolve_below)
            .field("resolve_above", &self.resolve_above)
            .field("for_at_least", &self.for_at_least)
            .field("severity", &self.severity)
            .field("unit", &self.unit)
            .field("clock", &self.clock)
            .field("gauge", &self.gauge.is_some())
            .finish_non_exhaustive()
    }
}

impl ThresholdWatcherBuilder {
    /// Fire when the value goes above `mark` (strictly).
    pub fn fire_above(mut self, mark: f64) -> Self {
        self.fire_above = Some(mark);
        self
    }

    /// With [`fire_above`](Self::fire_above): resolve when the value goes
    /// below `mark` (strictly), at most the fire mark. Default: the fire
    /// mark (no hysteresis).
    pub fn resolve_below(mut self, mark: f64) -> Self {
        self.resolve_below = Some(mark);
        self
    }

    /// Fire when the value goes below `mark` (strictly), for gauges where
    /// low is bad: free disk, free connections.
    pub fn fire_below(mut self, mark: f64) -> Self {
        self.fire_below = Some(mark);
        self
    }

    /// With [`fire_below`](Self::fire_below): resolve when the value goes
    /// above `mark` (strictly), at least the fire mark. Default: the fire
    /// mark (no hysteresis).
    pub fn resolve_above(mut self, mark: f64) -> Self {
        self.resolve_above = Some(mark);
        self
    }

    /// How long the value must stay past the fire mark before the incident
    /// fires (default zero: at once). A value back on the right side of
    /// the fire mark in the meantime starts the wait over.
    pub fn for_at_least(mut self, duration: Duration) -> Self {
        self.for_at_least = duration;
        self
    }

    /// The incident's severity (default [`Severity::Warning`]).
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// The unit written after values in messages: `"jobs"` gives
    /// "1,240 jobs", `"%"` gives "93%".
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// The clock the minimum duration is measured on (default: the
    /// alerter's). Tests give the alerter a
    /// [`ManualClock`](super::ManualClock)'s.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Samples the value with `gauge` once a second, on the monitor thread
    /// (or on each step of [`ManualClock::advance`](super::ManualClock::advance)),
    /// in addition to [`observe`](ThresholdWatcher::observe).
    ///
    /// It must be quick and must not block: it runs on the thread that
    /// evaluates every watcher. Read an atomic or a `len()`, not a
    /// database; for a value behind I/O, call `observe` from your own
    /// task. A panicking gauge is caught and logged, and sampled again
    /// next tick; a NaN is ignored.
    pub fn gauge(mut self, gauge: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.gauge = Some(Box::new(gauge));
        self
    }

    /// Builds the watcher, evaluated once a second from now on (on the
    /// monitor thread, or by
    /// [`ManualClock::advance`](super::ManualClock::advance)).
    ///
    /// # Errors
    ///
    /// Neither or both of `fire_above` and `fire_below`; a resolve mark for
    /// the other direction (`resolve_above` with `fire_above`) or on the
    /// wrong side of the fire mark; a mark that is NaN or infinite.
    pub fn build(self) -> Result<ThresholdWatcher, ConfigError> {
        let rule = self.rule()?;
        let shared = Arc::new(Shared {
            key: format!("threshold:{}", self.name),
            name: self.name,
            rule,
            for_at_least: self.for_at_least,
            severity: self.severity,
            unit: self.unit,
            clock: self.clock,
            alerter: self.alerter,
            gauge: self.gauge,
            value: AtomicU64::new(NO_VALUE),
            phase: AtomicU8::new(IDLE),
            state: Mutex::new(State { phase: Phase::Idle }),
            nan_logged: AtomicBool::new(false),
        });
        let weak: Weak<dyn Tick> = Arc::downgrade(&shared) as Weak<dyn Tick>;
        shared.alerter.watch(&shared.clock, weak);
        Ok(ThresholdWatcher { shared })
    }

    fn rule(&self) -> Result<Rule, ConfigError> {
        let (direction, fire, resolve, resolve_name, other) =
            match (self.fire_above, self.fire_below) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::invalid(
                        "fire_above",
                        "set fire_above or fire_below, not both",
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::invalid(
                        "fire_above",
                        "set fire_above (or fire_below) to say when to fire",
                    ))
                }
                (Some(fire), None) => (
                    Direction::Above,
                    fire,
                    self.resolve_below,
                    "resolve_below",
                    self.resolve_above.map(|_| "resolve_above"),
                ),
                (None, Some(fire)) => (
                    Direction::Below,
                    fire,
                    self.resolve_above,
                    "resolve_above",
                    self.resolve_below.map(|_| "resolve_below"),
                ),
            };
        let fire_name = match direction {
            Direction::Above => "fire_above",
            Direction::Below => "fire_below",
        };
        if let Some(other) = other {
            return Err(ConfigError::invalid(
                other,
                format!("does not go with {fire_name}: use {resolve_name}"),
            ));
        }
        if !fire.is_finite() {
            return Err(ConfigError::invalid(fire_name, "must be a finite number"));
        }
        let resolve = resolve.unwrap_or(fire);
        if !resolve.is_finite() {
            return Err(ConfigError::invalid(
                resolve_name,
                "must be a finite number",
            ));
        }
        let wrong_side = match direction {
            Direction::Above => resolve > fire,
            Direction::Below => resolve < fire,
        };
        if wrong_side {
            let (limit, side) = match direction {
                Direction::Above => ("at most", fire_name),
                Direction::Below => ("at least", fire_name),
            };
            return Err(ConfigError::invalid(
                resolve_name,
                format!(
                    "must be {limit} the {side} mark ({}), got {}",
                    format_number(fire),
                    format_number(resolve)
                ),
            ));
        }
        Ok(Rule {
            direction,
            fire,
            resolve,
        })
    }
}

/// `1,240`, `92.5`, `0.0031`: thousands separated, at most two decimals
/// (four under 1), trailing zeros dropped.
fn format_number(value: f64) -> String {
    if !value.is_finite() || value.abs() >= 1e15 {
        return format!("{value}");
    }
    let decimals = if value.abs() < 1.0 { 4 } else { 2 };
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(text.len() + int.len() / 3 + 1);
    if value < 0.0 && (int != "0" || !frac.is_empty()) {
        out.push('-');
    }
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::ManualClock;

    const SEC: Duration = Duration::from_secs(1);

    fn alerter() -> Alerter {
        Alerter::builder().build().unwrap()
    }

    fn queue(manual: &ManualClock, alerter: &Alerter) -> ThresholdWatcherBuilder {
        ThresholdWatcher::builder("queue", alerter)
            .fire_above(1000.0)
            .resolve_below(100.0)
            .clock(manual.clock())
    }

    #[test]
    fn watchers_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ThresholdWatcher>();
        send_sync::<ThresholdWatcherBuilder>();
    }

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(format_number(1240.0), "1,240");
        assert_eq!(format_number(1_000_000.0), "1,000,000");
        assert_eq!(format_number(999.0), "999");
        assert_eq!(format_number(92.5), "92.5");
        assert_eq!(format_number(1234.567), "1,234.57");
        assert_eq!(format_number(0.0031), "0.0031");
        assert_eq!(format_number(-1500.0), "-1,500");
        assert_eq!(format_number(-0.00001), "0");
        assert_eq!(format_number(f64::INFINITY), "inf");
    }

    #[test]
    fn hysteresis_keeps_firing_between_the_marks() {
        let manual = ManualClock::new();
        let alerter = alerter();
        let w = queue(&manual, &alerter).build().unwrap();
        w.observe(1000.0);
        assert!(!w.is_firing(), "at the mark is not above it");
        w.observe(1001.0);
        assert!(w.is_firing());
        assert!(alerter.is_firing("threshold:queue"));
        w.observe(500.0);
        w.observe(100.0);
        assert!(w.is_firing(), "between the marks");
        w.observe(99.0);
        assert!(!w.is_firing());
        assert!(!alerter.is_firing("threshold:queue"));
    }

    #[test]
    fn for_at_least_needs_the_value_to_stay() {
        let manual = ManualClock::new();
        let alerter = alerter();
        let w = queue(&manual, &alerter)
            .for_at_least(60 * SEC)
            .build()
            .unwrap();
        w.observe(2000.0);
        manual.advance(30 * SEC);
        w.observe(500.0); // back under the fire mark: the wait starts over
        manual.advance(120 * SEC);
        assert!(!w.is_firing());
        w.observe(2000.0);
        manual.advance(59 * SEC);
        assert!(!w.is_firing());
        manual.advance(SEC);
        assert!(w.is_firing(), "observed once, fired by a tick");
    }

    #[test]
    fn nan_is_ignored() {
        let manual = ManualClock::new();
        let alerter = alerter();
        let w = queue(&manual, &alerter).build().unwrap();
        assert_eq!(w.value(), None);
        w.observe(f64::NAN);
        assert_eq!(w.value(), None);
        w.observe(5000.0);
        w.observe(f64::NAN);
        assert_eq!(w.value(), Some(5000.0));
        assert!(w.is_firing());
    }

    #[test]
    fn a_busy_lock_never_blocks_observe() {
        let manual = ManualClock::new();
        let alerter = alerter();
        let w = queue(&manual, &alerter).build().unwrap();
        {
            let _held = w.shared.lock();
            w.observe(5000.0); // returns at once, evaluation skipped
        }
        assert_eq!(w.value(), Some(5000.0));
        assert!(!w.is_firing());
        w.observe(5000.0);
        assert!(w.is_firing());
    }

    #[cfg(feature = "test-util")]
    mod messages {
        use super::*;
        use crate::alert::{MemorySink, Notification, NotificationKind};
        use std::sync::atomic::AtomicI64;

        struct Harness {
            manual: ManualClock,
            alerter: Alerter,
            sink: MemorySink,
        }

        impl Harness {
            fn new() -> Self {
                let manual = ManualClock::new();
                let sink = MemorySink::new();
                let alerter = Alerter::builder()
                    .sink(sink.clone())
                    .clock(manual.clock())
                    .build()
                    .unwrap();
                Self {
                    manual,
                    alerter,
                    sink,
                }
            }

            fn sent(&self) -> Vec<Notification> {
                assert!(self.alerter.flush(Duration::from_secs(5)));
                self.sink.notifications()
            }
        }

        #[test]
        fn fires_once_with_the_value_the_mark_and_the_way_out() {
            let h = Harness::new();
            let w = queue(&h.manual, &h.alerter)
                .unit("jobs")
                .for_at_least(60 * SEC)
                .build()
                .unwrap();
            w.observe(1240.0);
            h.manual.advance(60 * SEC);
            for v in [1500.0, 900.0, 100.0, 2000.0] {
                w.observe(v);
            }
            h.manual.advance(600 * SEC);
            let sent = h.sent();
            assert_eq!(sent.len(), 1);
            let firing = &sent[0];
            assert_eq!(firing.kind(), NotificationKind::Firing);
            assert_eq!(firing.key(), "threshold:queue");
            assert_eq!(firing.alert().severity(), Severity::Warning);
            assert_eq!(firing.alert().title(), "queue at 1,240 jobs (above 1,000)");
            let detail = firing.alert().detail_text().unwrap();
            assert!(detail.starts_with("above 1,000 jobs since "), "{detail}");
            assert!(
                detail.ends_with(" UTC (1m); resolves below 100 jobs"),
                "{detail}"
            );

            w.observe(99.0);
            w.observe(5.0);
            let sent = h.sent();
            assert_eq!(sent.len(), 2);
            assert!(matches!(sent[1].kind(), NotificationKind::Resolved { .. }));
        }

        #[test]
        fn a_brief_spike_sends_nothing() {
            let h = Harness::new();
            let w = queue(&h.manual, &h.alerter)
                .for_at_least(60 * SEC)
                .build()
                .unwrap();
            for _ in 0..10 {
                w.observe(5000.0);
                h.manual.advance(30 * SEC);
                w.observe(10.0);
                h.manual.advance(30 * SEC);
            }
            assert!(h.sent().is_empty());
        }

        #[test]
        fn the_inverted_direction_fires_below_and_resolves_above() {
            let h = Harness::new();
            let w = ThresholdWatcher::builder("disk-free", &h.alerter)
                .fire_below(5.0)
                .resolve_above(10.0)
                .unit("GB")
                .clock(h.manual.clock())
                .build()
                .unwrap();
            w.observe(20.0);
            w.observe(5.0);
            assert!(h.sent().is_empty(), "at the mark is not below it");
            w.observe(4.5);
            w.observe(8.0);
            w.observe(10.0);
            let sent = h.sent();
            assert_eq!(sent.len(), 1, "still firing between the marks");
            assert_eq!(sent[0].alert().title(), "disk-free at 4.5 GB (below 5)");
            assert!(sent[0]
                .alert()
                .detail_text()
                .unwrap()
                .ends_with("; resolves above 10 GB"));
            w.observe(10.5);
            assert_eq!(h.sent().len(), 2);
            assert!(!w.is_firing());
        }

        #[test]
        fn a_gauge_is_sampled_on_each_tick() {
            let h = Harness::new();
            let depth = Arc::new(AtomicI64::new(3));
            let gauge = depth.clone();
            let w = queue(&h.manual, &h.alerter)
                .gauge(move || {
                    let v = gauge.load(Ordering::Relaxed);
                    assert!(v >= 0, "gauge broke");
                    v as f64
                })
                .build()
                .unwrap();
            h.manual.advance(SEC);
            assert_eq!(w.value(), Some(3.0));
            depth.store(1500, Ordering::Relaxed);
            h.manual.advance(SEC);
            assert!(w.is_firing());
            depth.store(-1, Ordering::Relaxed); // the gauge panics: caught
            h.manual.advance(3 * SEC);
            assert!(w.is_firing());
            depth.store(50, Ordering::Relaxed);
            h.manual.advance(SEC);
            assert!(!w.is_firing());
            assert_eq!(h.sent().len(), 2);
        }

        #[test]
        fn a_nan_gauge_is_ignored() {
            let h = Harness::new();
            let w = queue(&h.manual, &h.alerter)
                .gauge(|| f64::NAN)
                .build()
                .unwrap();
            w.observe(2000.0);
            h.manual.advance(5 * SEC);
            assert_eq!(w.value(), Some(2000.0));
            assert!(w.is_firing());
            assert_eq!(h.sent().len(), 1);
        }

        #[test]
        fn a_dropped_watcher_stops_and_sends_nothing() {
            let h = Harness::new();
            let w = queue(&h.manual, &h.alerter)
                .gauge(|| 5000.0)
                .for_at_least(10 * SEC)
                .build()
                .unwrap();
            h.manual.advance(5 * SEC);
            drop(w);
            h.manual.advance(60 * SEC);
            assert!(h.sent().is_empty());
        }
    }

    #[test]
    fn invalid_marks_are_errors() {
        let alerter = alerter();
        let b = || ThresholdWatcher::builder("x", &alerter);
        let name = |r: Result<ThresholdWatcher, ConfigError>| {
            r.map(|_| ()).unwrap_err().name().map(str::to_owned)
        };
        assert_eq!(name(b().build()).as_deref(), Some("fire_above"));
        assert_eq!(
            name(b().fire_above(1.0).fire_below(0.0).build()).as_deref(),
            Some("fire_above")
        );
        assert_eq!(
            name(b().fire_above(f64::NAN).build()).as_deref(),
            Some("fire_above")
        );
        assert_eq!(
            name(b().fire_below(f64::INFINITY).build()).as_deref(),
            Some("fire_below")
        );
        assert_eq!(
            name(b().fire_above(10.0).resolve_below(20.0).build()).as_deref(),
            Some("resolve_below")
        );
        assert_eq!(
            name(b().fire_above(10.0).resolve_above(5.0).build()).as_deref(),
            Some("resolve_above")
        );
        assert_eq!(
            name(b().fire_below(10.0).resolve_above(5.0).build()).as_deref(),
            Some("resolve_above")
        );
        assert_eq!(
            name(b().fire_below(10.0).resolve_above(f64::NAN).build()).as_deref(),
            Some("resolve_above")
        );
        let err = b()
            .fire_above(1000.0)
            .resolve_below(2000.0)
            .build()
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid resolve_below: must be at most the fire_above mark (1,000), got 2,000"
        );
        assert!(b().fire_below(5.0).resolve_above(10.0).build().is_ok());
    }
}
