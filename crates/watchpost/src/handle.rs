//! [`Watchpost`]: the one value a service builds at startup. It owns
//! watchpost's thread, its clock, its alerter, its health checks, its HTTP
//! monitor and its shared state, and hands out the parts each adapter
//! mounts.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::alert::{Alert, Alerter, AlerterBuilder, ConfigError, Sink, SinkStats, Stats};
use crate::client_ip::{ClientIpResolver, IpNet, DEFAULT_TRUSTED_PROXIES};
use crate::clock::Clock;
use crate::health::{CheckSpec, HealthChecks, HealthChecksBuilder};
use crate::monitor::{HttpMonitor, HttpMonitorBuilder};
use crate::ratelimit::{Quota, RateLimiter};
use crate::shared::{Availability, SharedContext, SharedState};

/// The incident the handle raises while its shared state is unreachable.
pub const SHARED_STATE_INCIDENT: &str = "watchpost:shared-state";

/// watchpost, assembled: alerts, the panic hook, health checks that run in
/// the background, the HTTP monitor, rate limiting, and shared state, on
/// one thread and one clock.
///
/// Build it once at startup ([`Watchpost::from_env`] or
/// [`Watchpost::builder`]), then hand its parts to your framework's adapter
/// (`watchpost_axum`, `watchpost_actix`, `watchpost_tower`): the probes, the
/// layers that catch panics and feed the monitor, the rate limiters. It
/// can't be assembled wrong in silence: what would switch protection off
/// (no peer address for the rate limiter, the monitor layered over the
/// probes, a sink whose token was refused) is said once, on stderr when no
/// tracing subscriber is installed, and [`status`](Self::status) tells what
/// is running.
///
/// - **One thread**, named `watchpost`, with its own small Tokio runtime:
///   it delivers alerts (so a panic is reported even when your runtime is
///   stuck), evaluates the monitors once a second, runs the health checks
///   every 10 s and holds the shared-state connection. Nothing else is
///   spawned behind your back. It stops once the handle and every part
///   handed out are dropped, after delivering what was queued.
/// - **One clock** ([`Clock`]; a [`ManualClock`](crate::ManualClock) in
///   tests) for the alerter, the rate limiters, the health checks'
///   caching, timeouts and background runs, and the monitors.
/// - **Health checks in the background**: a dependency going down fires
///   its incident with no probe traffic at all, and resolves when it is
///   back; probes answer from the last run.
/// - **Flushed on drop**: when the last clone of the handle is dropped
///   (`main` returns, an early `?` included), pending alerts are delivered,
///   for at most 3 s ([`flush_timeout`](WatchpostBuilder::flush_timeout)).
/// - **One bug, one message**: a panic's 500s are reported by the panic
///   alert, not counted again as a 5xx-rate incident.
///
/// Cheap to clone (an `Arc`).
///
/// # Examples
///
/// ```
/// use watchpost::checks::fn_check;
/// use watchpost::Watchpost;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // TELEGRAM_BOT_TOKEN + TELEGRAM_CHAT_ID, WATCHPOST_WEBHOOK_URL, ...;
/// // with nothing set, alerts go to the log.
/// let wp = Watchpost::from_env()?
///     .readiness("db", fn_check(|| async { true /* a query through your pool */ }))
///     .build()?;
/// println!("{}", wp.status()); // "watchpost is running: ..."
/// let limiter = wp.rate_limiter("10/min".parse()?); // for one route
/// # let _ = limiter;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Watchpost {
    inner: Arc<Inner>,
}

struct Inner {
    alerter: Alerter,
    health: HealthChecks,
    monitor: HttpMonitor,
    resolver: ClientIpResolver,
    fail_closed: bool,
    app_limiter: Option<RateLimiter>,
    shared: Option<Arc<dyn SharedState>>,
    flush_timeout: Duration,
    drain: Duration,
    panic_hook: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.alerter.is_delivery_thread() || self.flush_timeout.is_zero() {
            return;
        }
        let started = std::time::Instant::now();
        if !self.alerter.flush(self.flush_timeout) {
            // During a panic the flush waits for one try per sink only, so
            // say how long it really waited.
            let waited = crate::alert::format_duration(started.elapsed());
            let waited = if std::thread::panicking() {
                format!("waited {waited}, one try on each sink as a panic unwinds")
            } else {
                format!("waited {waited}")
            };
            let queued = self.alerter.stats().queued;
            let down: Vec<String> = self
                .alerter
                .sink_stats()
                .into_iter()
                .filter(|s| s.queued > 0)
                .map(|s| format!("{} ({} waiting)", s.name, s.queued))
                .collect();
            let fate = if self.alerter.keeps_outbox() {
                "they stay in the shared store's outbox, and the next process \
                 (or another replica) delivers them"
            } else {
                "they are lost when the process exits (with a shared store, \
                 `.shared(RedisStore::open(url)?)`, the next process would deliver them)"
            };
            crate::loud::say(&format!(
                "{queued} alert(s) still undelivered when the Watchpost was dropped \
                 ({waited}; {}): {fate}",
                if down.is_empty() {
                    "a sink is slow".to_owned()
                } else {
                    down.join(", ")
                }
            ));
        }
    }
}

impl fmt::Debug for Watchpost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchpost")
            .field("alerter", &self.inner.alerter)
            .field("health", &self.inner.health)
            .field("shared", &self.inner.shared.as_ref().map(|s| s.describe()))
            .finish_non_exhaustive()
    }
}

impl Watchpost {
    /// A builder with nothing configured: alerts to the log.
    pub fn builder() -> WatchpostBuilder {
        WatchpostBuilder::new()
    }

    /// A builder configured from the environment (see
    /// [`WatchpostBuilder::from_env`]).
    ///
    /// # Errors
    ///
    /// A variable with a value that can't be used; the error names it and
    /// never shows a secret.
    pub fn from_env() -> Result<WatchpostBuilder, ConfigError> {
        WatchpostBuilder::from_env()
    }

    /// The alerter: [`send`](Alerter::send), [`fire`](Alerter::fire),
    /// [`resolve`](Alerter::resolve) your own alerts.
    pub fn alerter(&self) -> &Alerter {
        &self.inner.alerter
    }

    /// The health checks, for the adapters' probe routes.
    pub fn health(&self) -> &HealthChecks {
        &self.inner.health
    }

    /// The HTTP monitor, for the adapters' monitor layers.
    pub fn monitor(&self) -> &HttpMonitor {
        &self.inner.monitor
    }

    /// The clock everything here reads.
    pub fn clock(&self) -> &Clock {
        self.inner.alerter.clock()
    }

    /// Sends an alert (deduplicated; see [`Alerter::send`]).
    pub fn send(&self, alert: Alert) {
        self.inner.alerter.send(alert);
    }

    /// Opens an incident (see [`Alerter::fire`]).
    pub fn fire(&self, key: &str, alert: Alert) {
        self.inner.alerter.fire(key, alert);
    }

    /// Resolves an incident (see [`Alerter::resolve`]).
    pub fn resolve(&self, key: &str) {
        self.inner.alerter.resolve(key);
    }

    /// Waits until queued alerts are delivered, at most `timeout` (see
    /// [`Alerter::flush`]). Dropping the last handle does it too.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.alerter.flush(timeout)
    }

    /// A per-client rate limiter with `quota`, for one route (mount it on
    /// that route only: `watchpost_axum`'s docs show how in each
    /// framework). It shares this handle's clock, trusted proxies and
    /// shared state (with Redis, one budget across replicas), never counts
    /// the health probes, and is loud if the server doesn't pass the peer
    /// address. Refine it like any [`RateLimiter`]: per-user keys with
    /// [`key`](RateLimiter::key), more routes with
    /// [`route`](RateLimiter::route).
    pub fn rate_limiter(&self, quota: Quota) -> RateLimiter {
        let inner = &*self.inner;
        limiter(
            quota,
            &inner.resolver,
            &inner.health,
            inner.fail_closed,
            inner.shared.as_deref(),
        )
    }

    /// The application-wide per-client limiter set with
    /// [`WatchpostBuilder::rate_limit`], which the adapters' `layers()`
    /// include; clones share its counts.
    pub fn app_rate_limiter(&self) -> Option<&RateLimiter> {
        self.inner.app_limiter.as_ref()
    }

    /// The resolver of client addresses (the trusted proxies).
    pub fn client_ip(&self) -> &ClientIpResolver {
        &self.inner.resolver
    }

    /// Waits for Ctrl-C or SIGTERM, turns readiness to 503, waits the drain
    /// delay ([`WatchpostBuilder::drain`], default 5 s) so load balancers
    /// stop sending traffic, then resolves: give it to the server's
    /// graceful shutdown.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.health.shutdown_signal(self.inner.drain)
    }

    /// What is running, for a "watchpost is running" line at startup and
    /// for tests. Its `Display` is that line.
    pub fn status(&self) -> Status {
        let inner = &*self.inner;
        let health = &inner.health;
        Status {
            threads: vec![crate::engine::THREAD_NAME],
            sinks: inner.alerter.sink_stats(),
            stats: inner.alerter.stats(),
            shared: inner.shared.as_ref().map(|s| SharedStatus {
                backend: s.describe(),
                available: s.is_available(),
            }),
            checks: health.names().count(),
            check_interval: health
                .runs_in_background()
                .then(|| health.background_interval())
                .flatten(),
            last_check_run: health.last_background_run(),
            panic_hook: inner.panic_hook && crate::panic::is_installed(),
            now: self.clock().system_time(),
        }
    }
}

/// What a [`Watchpost`] is running, from [`Watchpost::status`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The threads watchpost started: one, `watchpost`.
    pub threads: Vec<&'static str>,
    /// The alert sinks: whether each is enabled or down, what it
    /// delivered, holds and gave up (by reason).
    pub sinks: Vec<SinkStats>,
    /// The alerter's counters (sent, suppressed, dropped, failed, queued).
    pub stats: Stats,
    /// The shared state, if any.
    pub shared: Option<SharedStatus>,
    /// The number of health checks.
    pub checks: usize,
    /// How often they run in the background.
    pub check_interval: Option<Duration>,
    /// When they last finished a background round.
    pub last_check_run: Option<SystemTime>,
    /// Whether the panic hook reports to this handle's alerter.
    pub panic_hook: bool,
    now: SystemTime,
}

/// The shared state in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedStatus {
    /// What it is (`redis 10.0.0.7:6379`).
    pub backend: String,
    /// Whether it answered last time.
    pub available: bool,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "watchpost is running: thread {}",
            self.threads.join(", ")
        )?;
        let sinks: Vec<String> = self
            .sinks
            .iter()
            .map(|s| {
                let mut line = s.name.clone();
                if !s.enabled {
                    line.push_str(" (DISABLED)");
                } else if s.down {
                    line.push_str(&format!(" (DOWN, {} waiting)", s.queued));
                }
                let lost = s.given_up.total();
                if lost > 0 {
                    line.push_str(&format!(" ({lost} given up)"));
                }
                line
            })
            .collect();
        write!(f, "; alerts to {}", sinks.join(", "))?;
        if self.stats.queued > 0 || self.stats.failed > 0 || self.stats.dropped > 0 {
            write!(
                f,
                " ({} queued, {} failed, {} dropped)",
                self.stats.queued, self.stats.failed, self.stats.dropped
            )?;
        }
        match self.check_interval {
            Some(every) => {
                write!(
                    f,
                    "; {} health check(s) every {}",
                    self.checks,
                    crate::alert::format_duration(every)
                )?;
                match self.last_check_run {
                    Some(at) => {
                        let ago = self.now.duration_since(at).unwrap_or_default();
                        write!(f, " (last run {} ago)", crate::alert::format_duration(ago))?;
                    }
                    None => f.write_str(" (first run under way)")?,
                }
            }
            None => write!(f, "; {} health check(s) on demand", self.checks)?,
        }
        if let Some(shared) = &self.shared {
            let state = if shared.available {
                "available"
            } else {
                "UNAVAILABLE"
            };
            write!(f, "; shared state {} ({state})", shared.backend)?;
        }
        f.write_str(if self.panic_hook {
            "; panic hook installed"
        } else {
            "; panic hook NOT installed"
        })
    }
}

/// Configures a [`Watchpost`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::checks::{fn_check, TcpCheck};
/// use watchpost::Watchpost;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let wp = Watchpost::builder()
///     .service("checkout-api")
///     .environment("production")
///     .readiness("search", TcpCheck::new("127.0.0.1:9200"))
///     .liveness("worker", fn_check(|| async { true }))
///     .check_interval(Duration::from_secs(30))
///     .rate_limit("120/min".parse()?) // per client, the whole app
///     .trust_proxies(["10.0.0.0/8".parse()?])
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct WatchpostBuilder {
    alerts: AlerterBuilder,
    health: HealthChecksBuilder,
    monitor: Option<Box<dyn FnOnce(HttpMonitorBuilder) -> HttpMonitorBuilder + Send>>,
    rate_limit: Option<Quota>,
    resolver: ClientIpResolver,
    fail_closed: bool,
    shared: Option<Arc<dyn SharedState>>,
    clock: Option<Clock>,
    flush_timeout: Duration,
    drain: Duration,
    panic_hook: bool,
    panic_timeout: Duration,
}

impl fmt::Debug for WatchpostBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchpostBuilder")
            .field("alerts", &self.alerts)
            .field("health", &self.health)
            .field("rate_limit", &self.rate_limit)
            .field("resolver", &self.resolver)
            .field("shared", &self.shared.as_ref().map(|s| s.describe()))
            .field("flush_timeout", &self.flush_timeout)
            .field("drain", &self.drain)
            .field("panic_hook", &self.panic_hook)
            .finish_non_exhaustive()
    }
}

impl Default for WatchpostBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchpostBuilder {
    /// Nothing configured: alerts go to the log, no checks, no app-wide
    /// rate limit, the panic hook on, a 3 s flush on drop, a 5 s drain.
    pub fn new() -> Self {
        Self::with_alerts(AlerterBuilder::new())
    }

    fn with_alerts(alerts: AlerterBuilder) -> Self {
        Self {
            alerts,
            health: HealthChecksBuilder::new(),
            monitor: None,
            rate_limit: None,
            resolver: ClientIpResolver::new(),
            fail_closed: false,
            shared: None,
            clock: None,
            flush_timeout: Duration::from_secs(3),
            drain: Duration::from_secs(5),
            panic_hook: true,
            panic_timeout: crate::panic::DEFAULT_TIMEOUT,
        }
    }

    /// A builder configured from the environment: every variable of
    /// [`AlerterBuilder::from_env`] (`TELEGRAM_BOT_TOKEN` and
    /// `TELEGRAM_CHAT_ID`, `WATCHPOST_WEBHOOK_URL`, `WATCHPOST_SENTRY_DSN`,
    /// `WATCHPOST_SERVICE`, `WATCHPOST_ENV`, ...), and
    /// `WATCHPOST_TRUSTED_PROXIES`: who may set forwarding headers, as
    /// addresses or CIDRs separated by commas (`10.0.0.0/8, 192.0.2.7`;
    /// `default` in the list stands for loopback and the private ranges,
    /// the default when unset), or `none` to use the peer address only.
    ///
    /// # Errors
    ///
    /// A value that can't be used, naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Like [`from_env`](Self::from_env), reading variables through
    /// `lookup`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<OsString> + Clone,
    ) -> Result<Self, ConfigError> {
        let mut builder = Self::with_alerts(AlerterBuilder::from_lookup(lookup.clone())?);
        if let Some(value) = lookup("WATCHPOST_TRUSTED_PROXIES") {
            let value = value.into_string().map_err(|_| {
                ConfigError::invalid("WATCHPOST_TRUSTED_PROXIES", "not valid UTF-8")
            })?;
            if let Some(resolver) = trusted_proxies(&value)? {
                builder.resolver = resolver;
            }
        }
        Ok(builder)
    }

    /// The service's name, shown in every message (default: the
    /// executable's name, or `WATCHPOST_SERVICE`).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.alerts = self.alerts.service(name);
        self
    }

    /// The environment (`production`, `staging`).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.alerts = self.alerts.environment(environment);
        self
    }

    /// The running version (`env!("CARGO_PKG_VERSION")`, a git sha).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.alerts = self.alerts.version(version);
        self
    }

    /// Adds an alert sink (see [`AlerterBuilder::sink`]).
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.alerts = self.alerts.sink(sink);
        self
    }

    /// Changes the alerter's settings: dedupe window, delivery, looping
    /// alerts (see [`AlerterBuilder`]).
    pub fn alerts(mut self, configure: impl FnOnce(AlerterBuilder) -> AlerterBuilder) -> Self {
        self.alerts = configure(self.alerts);
        self
    }

    /// Adds a readiness check (see [`HealthChecksBuilder::readiness`]).
    pub fn readiness(mut self, name: impl Into<String>, check: impl crate::health::Check) -> Self {
        self.health = self.health.readiness(name, check);
        self
    }

    /// Adds a liveness check (see [`HealthChecksBuilder::liveness`]).
    pub fn liveness(mut self, name: impl Into<String>, check: impl crate::health::Check) -> Self {
        self.health = self.health.liveness(name, check);
        self
    }

    /// Adds a check with its own options (see [`CheckSpec`]).
    pub fn register(mut self, spec: CheckSpec) -> Self {
        self.health = self.health.register(spec);
        self
    }

    /// Changes the health checks' settings: timeouts, caching,
    /// thresholds, the details policy, paths (see [`HealthChecksBuilder`]).
    pub fn health(
        mut self,
        configure: impl FnOnce(HealthChecksBuilder) -> HealthChecksBuilder,
    ) -> Self {
        self.health = configure(self.health);
        self
    }

    /// How often the checks run in the background (default 10 s).
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.health = self.health.background(interval);
        self
    }

    /// Changes the HTTP monitor's rules (see [`HttpMonitorBuilder`]).
    pub fn http_monitor(
        mut self,
        configure: impl FnOnce(HttpMonitorBuilder) -> HttpMonitorBuilder + Send + 'static,
    ) -> Self {
        self.monitor = Some(Box::new(configure));
        self
    }

    /// Limits every client to `quota` on the whole application (the
    /// probes exempt), in the adapters' `layers()`. Tighter limits for one
    /// route come from [`Watchpost::rate_limiter`].
    pub fn rate_limit(mut self, quota: Quota) -> Self {
        self.rate_limit = Some(quota);
        self
    }

    /// Trusts these proxies' forwarding headers, replacing the default
    /// (loopback and the private ranges); see
    /// [`client_ip`](crate::client_ip) for the trust model.
    pub fn trust_proxies(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        self.resolver = self.resolver.trust_proxies(cidrs);
        self
    }

    /// Resolves client addresses with `resolver` (for presets such as
    /// [`ClientIpResolver::cloudflare`]).
    pub fn client_ip(mut self, resolver: ClientIpResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Rejects (429) the requests the rate limiters can't attribute to a
    /// client, because the server doesn't pass the peer address, instead
    /// of letting them through uncounted (default). Either way it is said
    /// once; see [`RateLimiter::fail_closed`].
    pub fn fail_closed(mut self, closed: bool) -> Self {
        self.fail_closed = closed;
        self
    }

    /// Shares alert dedupe, incidents and rate limits with the other
    /// replicas through `backend`: `.shared(RedisStore::open(&url)?)` with
    /// `watchpost_redis`. Its connection runs on watchpost's thread; while
    /// it is unreachable, nothing fails (alerts are deduplicated in this
    /// process, rate limits follow the store's policy) and one incident,
    /// "Shared state unavailable", says so until it is back.
    pub fn shared(mut self, backend: impl SharedState) -> Self {
        self.shared = Some(Arc::new(backend));
        self
    }

    /// The clock (default [`Clock::system`]); tests pass a
    /// [`ManualClock`](crate::ManualClock)'s and move time with `advance`.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long dropping the last handle waits for queued alerts (default
    /// 3 s; zero: no wait).
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// How long [`Watchpost::shutdown_signal`] keeps serving after turning
    /// readiness to 503 (default 5 s).
    pub fn drain(mut self, delay: Duration) -> Self {
        self.drain = delay;
        self
    }

    /// Whether the panic hook reports to this handle (default `true`);
    /// see [`panic`](crate::panic).
    pub fn panic_hook(mut self, enabled: bool) -> Self {
        self.panic_hook = enabled;
        self
    }

    /// How long a panicking thread waits for the sinks' answers to its
    /// alert at most (default 1 s; what ends the wait sooner:
    /// [`PanicHook::timeout`](crate::panic::PanicHook::timeout)).
    pub fn panic_timeout(mut self, timeout: Duration) -> Self {
        self.panic_timeout = timeout;
        self
    }

    /// Starts watchpost's thread, the background health checks and the
    /// shared state's connection, and points the panic hook at this
    /// handle.
    ///
    /// # Errors
    ///
    /// A setting that can't be used (it is named), or the thread could not
    /// start.
    pub fn build(self) -> Result<Watchpost, ConfigError> {
        let mut alerts = self.alerts;
        if let Some(clock) = &self.clock {
            alerts = alerts.clock(clock.clone());
        }
        if let Some(shared) = &self.shared {
            alerts = alerts.store(shared.alert_store());
        }
        let alerter = alerts.build()?;
        if let Some(shared) = &self.shared {
            let weak = alerter.downgrade();
            let backend = shared.describe();
            shared.start(SharedContext::new(
                alerter.engine().handle().clone(),
                Arc::new(move |change| {
                    if let Some(alerter) = weak.upgrade() {
                        shared_state_changed(&alerter, &backend, change);
                    }
                }),
            ));
        }
        let health = self
            .health
            .alert_on_failure(alerter.clone())
            .build()
            .map_err(ConfigError::Health)?;
        let mut monitor = HttpMonitor::builder(&alerter).probe_paths(health.probe_paths());
        if let Some(configure) = self.monitor {
            monitor = configure(monitor);
        }
        let monitor = monitor.build()?;
        if self.panic_hook {
            crate::panic::attach(&alerter, self.panic_timeout, true);
        }
        // Readers of the client address (`ClientIp`) resolve as the
        // handle's limiters do, so the limiters leave nothing in requests
        // (unless another handle's resolver came first).
        self.resolver.make_process_default();
        let app_limiter = self.rate_limit.map(|quota| {
            limiter(
                quota,
                &self.resolver,
                &health,
                self.fail_closed,
                self.shared.as_deref(),
            )
        });
        Ok(Watchpost {
            inner: Arc::new(Inner {
                alerter,
                health,
                monitor,
                resolver: self.resolver,
                fail_closed: self.fail_closed,
                app_limiter,
                shared: self.shared,
                flush_timeout: self.flush_timeout,
                drain: self.drain,
                panic_hook: self.panic_hook,
            }),
        })
    }
}

/// A per-client limiter on the handle's clock (the health checks'),
/// proxies and shared state, the probes exempt.
fn limiter(
    quota: Quota,
    resolver: &ClientIpResolver,
    health: &HealthChecks,
    fail_closed: bool,
    shared: Option<&dyn SharedState>,
) -> RateLimiter {
    let mut limiter = RateLimiter::per_ip(quota)
        .client_ip(resolver.clone())
        .clock(health.clock().clone())
        .exempt_health(health)
        .fail_closed(fail_closed);
    if let Some(shared) = shared {
        limiter = limiter.store(shared.rate_limit_store());
    }
    limiter
}

/// The "shared state unavailable" incident, fired and resolved by the
/// backend's reports.
fn shared_state_changed(alerter: &Alerter, backend: &str, change: Availability) {
    match change {
        Availability::Unavailable => alerter.fire(
            SHARED_STATE_INCIDENT,
            Alert::warning("Shared state unavailable").detail(format!(
                "{backend} is unreachable: alerts are deduplicated by each replica on its \
                 own, and shared rate limits follow the store's policy (allow by default) \
                 until it is back"
            )),
        ),
        Availability::Recovered { .. } => alerter.resolve(SHARED_STATE_INCIDENT),
    }
}

/// `WATCHPOST_TRUSTED_PROXIES`: `none`, or addresses and CIDRs (and
/// `default`) separated by commas; `None` for an empty value.
fn trusted_proxies(value: &str) -> Result<Option<ClientIpResolver>, ConfigError> {
    const NAME: &str = "WATCHPOST_TRUSTED_PROXIES";
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.eq_ignore_ascii_case("none") {
        return Ok(Some(ClientIpResolver::new().trust_none()));
    }
    let mut nets: Vec<IpNet> = Vec::new();
    for entry in value
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if entry.eq_ignore_ascii_case("default") {
            nets.extend_from_slice(DEFAULT_TRUSTED_PROXIES);
            continue;
        }
        let net = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ConfigError::invalid(
                    NAME,
                    format!(
                        "{entry:?} is not an address or a CIDR (expected e.g. \
                         `10.0.0.0/8, 192.0.2.7`, `default`, or `none`)"
                    ),
                )
            })?;
        nets.push(net);
    }
    Ok(Some(ClientIpResolver::new().trust_proxies(nets)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn trusted_proxies_parse_lists_none_and_default() {
        let r = trusted_proxies("10.0.0.0/8, 192.0.2.7").unwrap().unwrap();
        assert_eq!(r.trusted().len(), 2);
        assert!(r.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(r.is_trusted("192.0.2.7".parse().unwrap()));
        assert!(!r.is_trusted("127.0.0.1".parse().unwrap()));
        let none = trusted_proxies(" none\n").unwrap().unwrap();
        assert!(!none.is_trusted("127.0.0.1".parse().unwrap()));
        let default = trusted_proxies("default,203.0.113.0/24").unwrap().unwrap();
        assert!(default.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(default.is_trusted("203.0.113.9".parse().unwrap()));
        assert!(trusted_proxies("  ").unwrap().is_none());
        let err = trusted_proxies("10.0.0.0/8, nginx").unwrap_err();
        assert_eq!(err.name(), Some("WATCHPOST_TRUSTED_PROXIES"));
        assert!(err.to_string().contains("\"nginx\""), "{err}");
    }
}
