//! The HTTP monitor: error-rate and latency incidents from a rolling window
//! of requests, and the slow request log.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::window::{Histogram, Totals, Window, BUCKETS, ROUTES};
use crate::alert::{format_duration, Alert, Alerter, ConfigError};
use crate::clock::{Clock, Tick};

const LOG_TARGET: &str = "watchpost::monitor::http";

/// The status `record_panic` passes along: a 500 that isn't counted as one.
const PANICKED: u16 = u16::MAX;

/// Watches a service's requests for the two patterns users notice first:
/// the 5xx rate creeping up, and latency degrading.
///
/// The adapters feed it: a [`Watchpost`](crate::Watchpost)'s `layers()`,
/// or on their own `watchpost_tower::MonitorLayer`,
/// `watchpost_axum::MonitorLayer` and the actix-web
/// `watchpost_actix::Monitor` middleware call [`start`](Self::start) and
/// [`record`](Self::record) for each request. That costs two reads of the CPU's time-stamp counter
/// (through [quanta](https://docs.rs/quanta), about 10 ns each; the OS's
/// monotonic clock where there is no usable counter) and one or two
/// relaxed atomic adds into a rolling window of time buckets (default 60 s
/// in 12 buckets): no lock, no allocation. The rules are evaluated once a second
/// on watchpost's thread, never on the request path:
///
/// - **5xx rate.** When at least [`min_requests`](HttpMonitorBuilder::min_requests)
///   (default 20) were served in the window and the share of 5xx answers
///   reaches [`error_rate`](HttpMonitorBuilder::error_rate) (default 5%),
///   one incident fires (`http:5xx` for the default name) saying the rate,
///   the counts and the routes contributing most. It resolves once the
///   rate has stayed below [`resolve_below`](HttpMonitorBuilder::resolve_below)
///   (default half the threshold) for a full window.
/// - **Latency** (optional). When the window's p95 exceeds a
///   [`latency_budget`](HttpMonitorBuilder::latency_budget), or is
///   [`latency_degradation`](HttpMonitorBuilder::latency_degradation) times
///   the p95 of the hour before the window, one incident fires
///   (`http:latency`); it resolves after a full window back under.
/// - **Slow requests.** Each request slower than
///   [`slow_request`](HttpMonitorBuilder::slow_request) (default 1 s) is
///   logged at WARN with its method, route and duration.
///
/// Routes are the matched patterns (`/users/{id}`), never raw paths, so
/// the number of them stays bounded; a handful of slots (32) is kept per
/// monitor and the rest are counted as "other routes".
///
/// Cheap to clone (an `Arc`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::alert::{Alerter, LogSink};
/// use watchpost::monitor::HttpMonitor;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::builder().sink(LogSink::new()).build()?;
/// let monitor = HttpMonitor::builder(&alerter)
///     .error_rate(0.05)
///     .latency_budget(Duration::from_millis(800))
///     .build()?;
///
/// // What an adapter does for each request:
/// let start = monitor.start();
/// let status = 503; // ... the inner service answered
/// monitor.record(start, status, "GET", || Some("/api/chat"));
/// assert_eq!(monitor.snapshot().errors, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpMonitor {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    clock: Clock,
    source: Source,
    window: Window,
    alerter: Alerter,
    config: Config,
    error_key: String,
    latency_key: String,
    state: Mutex<State>,
    /// The health probes' paths: their requests are never counted.
    probes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Config {
    error_rate: f64,
    resolve_below: Option<f64>,
    min_requests: u64,
    latency_budget: Option<Duration>,
    degradation: Option<f64>,
    slow_request: Option<Duration>,
    baseline: Duration,
}

impl Config {
    fn resolve_below(&self) -> f64 {
        self.resolve_below.unwrap_or(self.error_rate / 2.0)
    }
}

impl fmt::Debug for HttpMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMonitor")
            .field("name", &self.shared.name)
            .field("window", &self.shared.window.length())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Where request times come from, as a raw reading and as nanoseconds
/// since the monitor was built.
enum Source {
    /// The system clock: quanta's counter, read raw on the hot path and
    /// scaled only when subtracted.
    Counter { counter: quanta::Clock, origin: u64 },
    /// A [`ManualClock`](super::ManualClock): readings are already
    /// nanoseconds since `origin`.
    Manual { origin: Instant },
}

impl Source {
    fn new(clock: &Clock) -> Self {
        if clock.is_manual() {
            Self::Manual {
                origin: clock.now(),
            }
        } else {
            let counter = quanta::Clock::new();
            let origin = counter.raw();
            Self::Counter { counter, origin }
        }
    }

    #[inline]
    fn raw(&self, clock: &Clock) -> u64 {
        match self {
            Self::Counter { counter, .. } => counter.raw(),
            Self::Manual { origin } => nanos(clock.now().saturating_duration_since(*origin)),
        }
    }

    /// Nanoseconds from `from` to `to`, raw readings (0 if `to` is not
    /// later).
    #[inline]
    fn between(&self, from: u64, to: u64) -> u64 {
        match self {
            Self::Counter { counter, .. } => counter.delta_as_nanos(from, to),
            Self::Manual { .. } => to.saturating_sub(from),
        }
    }

    /// Nanoseconds since the origin of a raw reading.
    #[inline]
    fn since_origin(&self, raw: u64) -> u64 {
        match self {
            Self::Counter { origin, .. } => self.between(*origin, raw),
            Self::Manual { .. } => raw,
        }
    }

    /// Nanoseconds since the origin now; `tick` is the ticker's time, used
    /// for a manual clock (the counter is read otherwise).
    fn at_tick(&self, clock: &Clock, tick: Instant) -> u64 {
        match self {
            Self::Counter { .. } => self.since_origin(self.raw(clock)),
            Self::Manual { origin } => nanos(tick.saturating_duration_since(*origin)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// When a request started, from [`HttpMonitor::start`], to pass to
/// [`HttpMonitor::record`]. Meaningful only to the monitor that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestStart(u64);

/// The figures of the current window, as the rules see them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WindowSnapshot {
    /// Requests answered in the window.
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// `errors / requests` (0 when there were none).
    pub error_rate: f64,
    /// The 95th percentile latency (the upper bound of its histogram
    /// class: at most 25% above the true value, never below it).
    pub p95: Option<Duration>,
    /// The routes with the most 5xx (`"GET /api/chat"`), most first; 5xx
    /// without a known route or beyond the route slots are counted as
    /// `"other routes"`.
    pub top_routes: Vec<(String, u64)>,
    /// The window's length.
    pub window: Duration,
}

impl HttpMonitor {
    /// A monitor with the default rules, alerting through `alerter`.
    ///
    /// # Errors
    ///
    /// Never with the defaults; kept for symmetry with
    /// [`builder`](Self::builder).
    pub fn new(alerter: &Alerter) -> Result<Self, ConfigError> {
        Self::builder(alerter).build()
    }

    /// A builder, to tune the rules.
    pub fn builder(alerter: &Alerter) -> HttpMonitorBuilder {
        HttpMonitorBuilder::new(alerter.clone())
    }

    /// Whether requests to `path` are counted: every path but the health
    /// probes' ([`HttpMonitorBuilder::probe_paths`]). Adapters ask before
    /// [`start`](Self::start), so the monitor can wrap the whole
    /// application, probes included.
    #[inline]
    pub fn watches(&self, path: &str) -> bool {
        !self.shared.probes.iter().any(|probe| {
            path.strip_prefix(probe.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// The time a request starts, to pass to [`record`](Self::record).
    #[inline]
    pub fn start(&self) -> RequestStart {
        RequestStart(self.shared.source.raw(&self.shared.clock))
    }

    /// Records a request that started at `start` and was answered with
    /// `status`. `route` gives the matched route pattern; it is only called
    /// for 5xx answers, 404s and slow requests, so an adapter whose
    /// framework builds the pattern on demand pays for it only then. A 404
    /// with no matched route (an unknown path) is not counted: a scanner's
    /// flood of them would dilute the 5xx rate.
    ///
    /// Requests whose handler failed without a status (a service error,
    /// a panic that reached the adapter) should be recorded as 500.
    #[inline]
    pub fn record<R, F>(&self, start: RequestStart, status: u16, method: &str, route: F)
    where
        F: FnOnce() -> Option<R>,
        R: AsRef<str>,
    {
        let (now, latency) = self.end(start);
        self.add(now, latency, status, method, route);
    }

    /// The time now (since the origin) and the latency of a request that
    /// started at `start`.
    #[inline]
    fn end(&self, start: RequestStart) -> (u64, Duration) {
        let s = &*self.shared;
        let end = s.source.raw(&s.clock);
        let latency = Duration::from_nanos(s.source.between(start.0, end));
        (s.source.since_origin(end), latency)
    }

    /// Records a request whose handler panicked (and was answered 500 by a
    /// catch-panic layer): counted as a request, but not in the 5xx rate.
    /// The panic is alerted on its own, once per location, so one bug
    /// gives one message, not a panic alert and a 5xx-rate incident for
    /// the same requests. Adapters call it for the 500 their catch-panic
    /// layer answers.
    pub fn record_panic<R, F>(&self, start: RequestStart, method: &str, route: F)
    where
        F: FnOnce() -> Option<R>,
        R: AsRef<str>,
    {
        let (now, latency) = self.end(start);
        self.add(now, latency, PANICKED, method, route);
    }

    /// Records a request answered now with `status` that took `latency`,
    /// measured by the caller (a framework that times requests itself, a
    /// replay in a test). Otherwise as [`record`](Self::record).
    pub fn record_latency<R, F>(&self, latency: Duration, status: u16, method: &str, route: F)
    where
        F: FnOnce() -> Option<R>,
        R: AsRef<str>,
    {
        let s = &*self.shared;
        let now = s.source.since_origin(s.source.raw(&s.clock));
        self.add(now, latency, status, method, route);
    }

    #[inline]
    fn add<R, F>(&self, now: u64, latency: Duration, status: u16, method: &str, route: F)
    where
        F: FnOnce() -> Option<R>,
        R: AsRef<str>,
    {
        let s = &*self.shared;
        let error = (500..600).contains(&status) && status != PANICKED;
        let status = if status == PANICKED { 500 } else { status };
        let slow = s.config.slow_request.is_some_and(|t| latency >= t);
        if error || slow || status == 404 {
            self.record_rare(now, latency, status, method, error, slow, route);
        } else {
            s.window.record(s.window.seq(now), latency);
        }
    }

    /// A 5xx, a slow request or a 404: what needs the route's name. A 404
    /// no route matched (an unknown path) is not counted at all: a
    /// scanner's flood of them would dilute the 5xx rate.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn record_rare<R, F>(
        &self,
        now: u64,
        latency: Duration,
        status: u16,
        method: &str,
        error: bool,
        slow: bool,
        route: F,
    ) where
        F: FnOnce() -> Option<R>,
        R: AsRef<str>,
    {
        let route = route();
        let route = route.as_ref().map(AsRef::as_ref);
        if status == 404 && route.is_none() {
            return;
        }
        let window = &self.shared.window;
        let seq = window.seq(now);
        window.record(seq, latency);
        if error {
            window.record_error(seq, method, route);
        }
        if slow {
            tracing::warn!(
                target: LOG_TARGET,
                method,
                route = route.unwrap_or("(unmatched)"),
                status,
                duration_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                "slow request: {method} {} took {}",
                route.unwrap_or("(unmatched)"),
                format_latency(latency),
            );
        }
    }

    /// The figures of the current window.
    pub fn snapshot(&self) -> WindowSnapshot {
        let s = &*self.shared;
        let now = s.source.since_origin(s.source.raw(&s.clock));
        let totals = s.window.totals(s.window.seq(now));
        s.snapshot(&totals)
    }

    /// The monitor's name (default `http`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The incident key of the 5xx rule (`http:5xx` by default), for
    /// [`Alerter::is_firing`].
    pub fn error_rate_key(&self) -> &str {
        &self.shared.error_key
    }

    /// The incident key of the latency rule (`http:latency` by default).
    pub fn latency_key(&self) -> &str {
        &self.shared.latency_key
    }

    /// The clock this monitor reads.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }
}

/// Configures an [`HttpMonitor`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct HttpMonitorBuilder {
    alerter: Alerter,
    name: String,
    window: Duration,
    config: Config,
    clock: Clock,
    probes: Vec<String>,
}

impl HttpMonitorBuilder {
    fn new(alerter: Alerter) -> Self {
        Self {
            probes: ["/livez", "/readyz", "/healthz"]
                .map(str::to_owned)
                .to_vec(),
            name: "http".to_owned(),
            window: Duration::from_secs(60),
            config: Config {
                error_rate: 0.05,
                resolve_below: None,
                min_requests: 20,
                latency_budget: None,
                degradation: None,
                slow_request: Some(Duration::from_secs(1)),
                baseline: Duration::from_secs(3600),
            },
            clock: alerter.clock().clone(),
            alerter,
        }
    }

    /// The monitor's name, the prefix of its incident keys (default
    /// `http`: `http:5xx`, `http:latency`). Give each monitor its own
    /// when a process serves several APIs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The rolling window (default 60 s, kept in 12 buckets).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The share of 5xx answers that fires the incident, from 0 to 1
    /// (default 0.05: 5%).
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.config.error_rate = rate;
        self
    }

    /// The share under which a firing incident resolves, once it has held
    /// for a full window (default: half of [`error_rate`](Self::error_rate)).
    pub fn resolve_below(mut self, rate: f64) -> Self {
        self.config.resolve_below = Some(rate);
        self
    }

    /// The fewest requests in the window for the 5xx and latency rules to
    /// fire (default 20), so two failures out of three requests at night
    /// don't page anyone.
    pub fn min_requests(mut self, requests: u64) -> Self {
        self.config.min_requests = requests;
        self
    }

    /// Fires the latency incident when the window's p95 exceeds `budget`
    /// (default: no budget).
    pub fn latency_budget(mut self, budget: Duration) -> Self {
        self.config.latency_budget = Some(budget);
        self
    }

    /// Fires the latency incident when the window's p95 is more than
    /// `factor` times the p95 of the hour before the window (default: off;
    /// 2.0 catches "p95 doubled after the deploy"). The baseline needs at
    /// least 100 requests in that hour.
    pub fn latency_degradation(mut self, factor: f64) -> Self {
        self.config.degradation = Some(factor);
        self
    }

    /// Logs requests slower than `threshold` at WARN (default 1 s);
    /// `None` turns the log off.
    pub fn slow_request(mut self, threshold: Option<Duration>) -> Self {
        self.config.slow_request = threshold;
        self
    }

    /// The clock (default: the alerter's, [`Clock::system`] unless set);
    /// tests give the alerter a [`ManualClock`](super::ManualClock)'s.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The health probes' base paths (default `/livez`, `/readyz`,
    /// `/healthz`; a [`Watchpost`](crate::Watchpost) passes its own).
    /// Requests to them are never counted ([`watches`](HttpMonitor::watches)
    /// says no): a probe's 503 is a signal to the load balancer, not a
    /// server error, and the monitor can wrap the whole application,
    /// probes included.
    pub fn probe_paths<P: Into<String>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.probes = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Builds the monitor and registers its rules with the clock's
    /// ticker. On the system clock, the first monitor built in a process
    /// calibrates the CPU's counter against the OS clock: a busy wait of
    /// a millisecond or so, 200 ms at most, once, at startup.
    ///
    /// # Errors
    ///
    /// A rate outside `0..=1` (or not a number), a resolve rate above the
    /// fire rate, a degradation factor not above 1, a window shorter than
    /// 12 ms.
    pub fn build(self) -> Result<HttpMonitor, ConfigError> {
        let c = &self.config;
        let probes = self.probes.clone();
        let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
        if !rate_ok(c.error_rate) || c.error_rate == 0.0 {
            return Err(ConfigError::invalid(
                "error_rate",
                "must be a share above 0 and at most 1 (0.05 is 5%)",
            ));
        }
        if c.resolve_below
            .is_some_and(|r| !rate_ok(r) || r > c.error_rate)
        {
            return Err(ConfigError::invalid(
                "resolve_below",
                "must be a share from 0 to the error rate",
            ));
        }
        if c.degradation.is_some_and(|f| f.is_nan() || f <= 1.0) {
            return Err(ConfigError::invalid(
                "latency_degradation",
                "must be a factor above 1 (2.0: p95 doubled)",
            ));
        }
        if self.window < Duration::from_millis(BUCKETS) {
            return Err(ConfigError::invalid("window", "must be at least 12 ms"));
        }
        let shared = Arc::new(Shared {
            source: Source::new(&self.clock),
            error_key: format!("{}:5xx", self.name),
            latency_key: format!("{}:latency", self.name),
            name: self.name,
            window: Window::new(self.window),
            alerter: self.alerter,
            config: self.config,
            state: Mutex::new(State::default()),
            clock: self.clock,
            probes,
        });
        let weak: Weak<dyn Tick> = Arc::downgrade(&shared) as Weak<dyn Tick>;
        shared.alerter.watch(&shared.clock, weak);
        Ok(HttpMonitor { shared })
    }
}

/// The evaluation state, touched only by ticks.
#[derive(Default)]
struct State {
    errors: Rule,
    latency: Rule,
    baseline: Baseline,
}

/// Fire on breach; resolve after a full window of calm.
#[derive(Default)]
struct Rule {
    firing: bool,
    calm_since: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
enum Transition {
    Fire,
    Resolve,
    Stay,
}

impl Rule {
    fn update(&mut self, breach: bool, calm: bool, now: Instant, window: Duration) -> Transition {
        if !self.firing {
            if breach {
                self.firing = true;
                self.calm_since = None;
                return Transition::Fire;
            }
            return Transition::Stay;
        }
        if !calm {
            self.calm_since = None;
            return Transition::Stay;
        }
        let since = *self.calm_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= window {
            self.firing = false;
            self.calm_since = None;
            return Transition::Resolve;
        }
        Transition::Stay
    }
}

/// The latency of the hour before the window, in 12 slots, fed with the
/// buckets leaving the window.
#[derive(Default)]
struct Baseline {
    /// The last bucket folded in.
    folded: u64,
    slots: Vec<(u64, Histogram)>,
}

const BASELINE_SLOTS: u64 = 12;
const BASELINE_MIN_REQUESTS: u64 = 100;

impl Baseline {
    /// Folds buckets that left the window up to `seq - BUCKETS`.
    fn fold(&mut self, window: &Window, seq: u64, buckets_per_slot: u64) {
        let last_out = seq.saturating_sub(BUCKETS);
        if last_out <= self.folded {
            return;
        }
        // Buckets older than the ring are gone; start where data remains.
        let first = (self.folded + 1).max(last_out.saturating_sub(BUCKETS - 1));
        for bucket in first..=last_out {
            let totals = window.totals_of(bucket..=bucket);
            if totals.requests == 0 {
                continue;
            }
            let slot = bucket / buckets_per_slot;
            match self.slots.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, h)) => h.add(&totals.latency),
                None => self.slots.push((slot, totals.latency)),
            }
        }
        self.folded = last_out;
        let current = last_out / buckets_per_slot;
        self.slots.retain(|(s, _)| *s + BASELINE_SLOTS > current);
    }

    fn p95(&self) -> Option<Duration> {
        let mut all = Histogram::default();
        for (_, h) in &self.slots {
            all.add(h);
        }
        if all.count() < BASELINE_MIN_REQUESTS {
            return None;
        }
        all.quantile(0.95)
    }
}

impl Tick for Shared {
    fn tick(&self, now: Instant) {
        let seq = self.window.seq(self.source.at_tick(&self.clock, now));
        let totals = self.window.totals(seq);
        let window = self.window.length();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);

        let c = &self.config;
        let rate = rate(&totals);
        let enough = totals.requests >= c.min_requests;
        let breach = enough && rate >= c.error_rate;
        let calm = rate < c.resolve_below();
        match state.errors.update(breach, calm, now, window) {
            Transition::Fire => self
                .alerter
                .fire(&self.error_key, self.error_alert(&totals)),
            Transition::Resolve => self.alerter.resolve(&self.error_key),
            Transition::Stay => {}
        }

        if c.latency_budget.is_none() && c.degradation.is_none() {
            return;
        }
        let per_slot = (c.baseline.as_millis() / u128::from(BASELINE_SLOTS))
            .checked_div(self.window.bucket().as_millis())
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(1)
            .max(1);
        state.baseline.fold(&self.window, seq, per_slot);
        let baseline = state.baseline.p95();
        let p95 = totals.latency.quantile(0.95);
        let over = |p95: Duration| {
            c.latency_budget.is_some_and(|b| p95 > b)
                || matches!((c.degradation, baseline), (Some(f), Some(b)) if p95.as_secs_f64() > f * b.as_secs_f64())
        };
        let slow = p95.is_some_and(over);
        match state.latency.update(enough && slow, !slow, now, window) {
            Transition::Fire => {
                if let Some(p95) = p95 {
                    let alert = self.latency_alert(&totals, p95, baseline);
                    self.alerter.fire(&self.latency_key, alert);
                }
            }
            Transition::Resolve => self.alerter.resolve(&self.latency_key),
            Transition::Stay => {}
        }
    }
}

fn rate(totals: &Totals) -> f64 {
    if totals.requests == 0 {
        0.0
    } else {
        totals.errors as f64 / totals.requests as f64
    }
}

impl Shared {
    fn snapshot(&self, totals: &Totals) -> WindowSnapshot {
        WindowSnapshot {
            requests: totals.requests,
            errors: totals.errors,
            error_rate: rate(totals),
            p95: totals.latency.quantile(0.95),
            top_routes: self.top_routes(totals),
            window: self.window.length(),
        }
    }

    fn top_routes(&self, totals: &Totals) -> Vec<(String, u64)> {
        let mut routes: Vec<(String, u64)> = totals
            .route_errors
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let name = match self.window.route_name(i) {
                    Some(name) if i < ROUTES => name.to_owned(),
                    _ => "other routes".to_owned(),
                };
                (name, *n)
            })
            .collect();
        routes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        routes
    }

    fn error_alert(&self, totals: &Totals) -> Alert {
        let window = format_duration(self.window.length());
        let rate = rate(totals);
        let routes = self.top_routes(totals);
        let mut detail = format!(
            "{} of {} requests answered 5xx in the last {window} (fires at {}, resolves under {} for {window}).",
            totals.errors,
            totals.requests,
            percent(self.config.error_rate),
            percent(self.config.resolve_below()),
        );
        if !routes.is_empty() {
            detail.push_str("\nTop routes: ");
            let top: Vec<String> = routes
                .iter()
                .take(3)
                .map(|(r, n)| format!("{r} ({n})"))
                .collect();
            detail.push_str(&top.join(", "));
        }
        Alert::error(format!("HTTP 5xx rate {} ({})", percent(rate), self.name))
            .detail(detail)
            .label("monitor", self.name.clone())
            .label("error_rate", format!("{rate:.4}"))
            .label("requests", totals.requests.to_string())
            .label("errors", totals.errors.to_string())
    }

    fn latency_alert(&self, totals: &Totals, p95: Duration, baseline: Option<Duration>) -> Alert {
        let window = format_duration(self.window.length());
        let mut why = Vec::new();
        if let Some(budget) = self.config.latency_budget.filter(|b| p95 > *b) {
            why.push(format!("budget {}", format_latency(budget)));
        }
        if let (Some(f), Some(b)) = (self.config.degradation, baseline) {
            if p95.as_secs_f64() > f * b.as_secs_f64() {
                why.push(format!(
                    "{:.1}× the previous hour's {}",
                    p95.as_secs_f64() / b.as_secs_f64().max(1e-9),
                    format_latency(b)
                ));
            }
        }
        Alert::warning(format!(
            "HTTP p95 latency {} ({}; {})",
            format_latency(p95),
            why.join(", "),
            self.name
        ))
        .detail(format!(
            "p95 over the last {window}: {} across {} requests. Resolves after {window} back under.",
            format_latency(p95),
            totals.requests
        ))
        .label("monitor", self.name.clone())
        .label("p95_ms", p95.as_millis().to_string())
    }
}

fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if p >= 10.0 || p.fract() == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// `850ms`, `1.25s`, `42s`.
fn format_latency(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format_duration(d)
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests;
