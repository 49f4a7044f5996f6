//! The [`Alerter`]: dedupe on the caller's thread, delivery on its own.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::env::ConfigError;
use super::gate::{Gate, HotRule, Looping, Seen};
use super::lane::SinkStats;
use super::model::{Alert, ServiceInfo};
use super::notification::{Notification, NotificationKind};
use super::sink::Sink;
use super::sinks::LogSink;
use super::store::{AlertStore, MemoryStore};
use super::worker::{self, Counters, Delivery, DeliveryConfig, Done, Job, Queue, StoreOp};
use crate::clock::{Clock, Tick};
use crate::engine::Engine;

/// Sends alerts to Telegram, webhooks and the log without ever blocking or
/// failing the caller, once per incident.
///
/// Cheap to clone (an `Arc`): build one at startup and pass it around.
/// Building it starts watchpost's thread (`watchpost`; a
/// [`Watchpost`](crate::Watchpost) builds one alerter, so its handle has
/// exactly one such thread), which runs
/// its own small Tokio runtime, so alerts get out even when the
/// application's runtime is stuck, busy or gone. The thread delivers what is
/// queued and stops once the last clone is dropped; call
/// [`flush`](Self::flush) before exiting so nothing queued is lost.
///
/// See the [module docs](super) for dedupe, incidents and delivery
/// guarantees.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::alert::{Alert, Alerter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // TELEGRAM_BOT_TOKEN + TELEGRAM_CHAT_ID, WATCHPOST_WEBHOOK_URL, ...;
/// // nothing set: alerts go to the log.
/// let alerter = Alerter::from_env()?;
///
/// alerter.send(Alert::error("Stripe webhook retry rate high").detail("42 retries/min"));
/// alerter.fire("queue-depth", Alert::warning("Queue depth 1200"));
/// alerter.resolve("queue-depth");
/// alerter.flush(Duration::from_secs(3));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<ServiceInfo>,
    clock: Clock,
    gate: Gate,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    sinks: Vec<String>,
    engine: Engine,
    /// Whether the store keeps undelivered alerts across restarts.
    outbox: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl fmt::Debug for Alerter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerter")
            .field("service", &self.inner.service.name)
            .field("sinks", &self.inner.sinks)
            .field("window", &self.inner.gate.window())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A weak handle to an [`Alerter`], from [`Alerter::downgrade`].
///
/// # Examples
///
/// ```
/// use watchpost::alert::{Alert, Alerter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::builder().build()?;
/// let weak = alerter.downgrade();
/// if let Some(alerter) = weak.upgrade() {
///     alerter.send(Alert::warning("Shared alert state unavailable"));
/// }
/// drop(alerter);
/// assert!(weak.upgrade().is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct WeakAlerter {
    inner: Weak<Inner>,
}

impl fmt::Debug for WeakAlerter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakAlerter")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

impl WeakAlerter {
    /// The alerter, if a clone of it is still alive somewhere.
    pub fn upgrade(&self) -> Option<Alerter> {
        self.inner.upgrade().map(|inner| Alerter { inner })
    }
}

/// What an [`Alerter`] has done so far. Deliveries count once per sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Deliveries that succeeded.
    pub sent: u64,
    /// Alerts suppressed by dedupe (and repeated `fire` calls).
    pub suppressed: u64,
    /// Alerts dropped because a queue was full (the oldest go first).
    pub dropped: u64,
    /// Deliveries given up for good (still failing at their max age,
    /// rejected, sink disabled, still queued at shutdown); per sink and
    /// reason in [`Alerter::sink_stats`].
    pub failed: u64,
    /// Alerts not yet delivered to every sink (queued, or waiting for a
    /// sink that is down).
    pub queued: u64,
}

impl Alerter {
    /// A builder, to configure the alerter in code.
    pub fn builder() -> AlerterBuilder {
        AlerterBuilder::new()
    }

    /// An alerter configured from the environment (see
    /// [`AlerterBuilder::from_env`]); with nothing set, alerts go to the log.
    ///
    /// # Errors
    ///
    /// A variable with a value that can't be used (the error names it), or
    /// the delivery thread could not start.
    pub fn from_env() -> Result<Self, ConfigError> {
        AlerterBuilder::from_env()?.build()
    }

    /// Sends an alert, unless one with the same key was delivered within
    /// the dedupe window (then it is counted, and the next delivered alert
    /// for the key says how many were suppressed).
    ///
    /// Never blocks on I/O, never panics, and returns nothing to handle:
    /// the alert is queued for the delivery thread.
    pub fn send(&self, alert: Alert) {
        self.inner.send(alert, None);
    }

    /// Sends the alert `build` makes under dedupe `key`, building it only
    /// if it will be delivered (for callers whose alert is costly to make
    /// and whose key is cheap, as the tracing layer's).
    #[cfg(feature = "tracing-layer")]
    pub(crate) fn send_lazy(&self, key: &str, build: impl FnOnce() -> Alert) -> bool {
        self.inner.send_lazy(key, build)
    }

    /// Opens the incident `key` and sends one "firing" message. Further
    /// `fire` calls for an open incident send nothing (they count as
    /// suppressed) until [`resolve`](Self::resolve) closes it.
    pub fn fire(&self, key: &str, alert: Alert) {
        self.inner.fire(key, alert);
    }

    /// Closes the incident `key` and sends one "resolved" message saying
    /// how long it lasted. Does nothing if `key` isn't firing.
    pub fn resolve(&self, key: &str) {
        self.inner.resolve(key);
    }

    /// Whether the incident `key` is open (in this process).
    pub fn is_firing(&self, key: &str) -> bool {
        self.inner.gate.is_open(key)
    }

    /// Waits until every queued alert is delivered (or has failed for
    /// good), at most `timeout`. `true` if the queue emptied in time.
    ///
    /// Blocks the calling thread: call it at shutdown, after the server
    /// stopped, or from `spawn_blocking`. Called on the delivery thread
    /// (from a custom sink) it returns `false` at once.
    ///
    /// Called while the thread unwinds from a panic (a
    /// [`Watchpost`](crate::Watchpost) dropped as a panic leaves `main`),
    /// it waits as the panic hook does: until every alert has been tried
    /// once on every sink, not for the retries of a sink that failed (a
    /// refused connection is final there too), so a process dying of a
    /// panic exits without waiting out a sink that is down. What is still
    /// undelivered then stays in the store's outbox, when it keeps one.
    pub fn flush(&self, timeout: Duration) -> bool {
        if self.inner.engine.is_current() {
            return false;
        }
        if std::thread::panicking() {
            return self.inner.queue.wait_tried(timeout);
        }
        self.inner.queue.wait_idle(timeout)
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            sent: c.sent.load(Ordering::Relaxed),
            suppressed: c.suppressed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            queued: self.inner.queue.pending() as u64,
        }
    }

    /// Each sink's counters: delivered, queued, whether it is down or
    /// disabled, and the alerts it gave up by reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use watchpost::alert::Alerter;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let alerter = Alerter::builder().build()?;
    /// for sink in alerter.sink_stats() {
    ///     println!("{}: {} sent, {} given up", sink.name, sink.sent, sink.given_up.total());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn sink_stats(&self) -> Vec<SinkStats> {
        self.inner
            .sinks
            .iter()
            .zip(self.inner.counters.sinks.iter())
            .map(|(name, c)| c.snapshot(name))
            .collect()
    }

    /// The service alerts say they come from.
    pub fn service(&self) -> &ServiceInfo {
        &self.inner.service
    }

    /// The clock behind dedupe windows and incidents; monitors built on
    /// this alerter use it too unless given another.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// A handle that doesn't keep the alerter alive: for callbacks the
    /// alerter itself (or its store) holds, such as a store's "shared state
    /// unavailable" hook, where a clone would be a reference cycle and the
    /// delivery thread would never stop.
    pub fn downgrade(&self) -> WeakAlerter {
        WeakAlerter {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The names of the configured sinks.
    pub fn sink_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.sinks.iter().map(String::as_str)
    }

    /// Each sink's name and whether it still delivers: a sink that found
    /// its configuration wrong (a revoked bot token, a deleted webhook:
    /// 401, 403, 404) switches itself off for the life of the process, and
    /// says so once, on stderr when no tracing subscriber is installed.
    pub fn sinks(&self) -> impl Iterator<Item = (&str, bool)> + '_ {
        let counters = &self.inner.counters.sinks;
        self.inner.sinks.iter().enumerate().map(move |(i, name)| {
            let off = counters
                .get(i)
                .is_some_and(|c| c.disabled.load(Ordering::Relaxed));
            (name.as_str(), !off)
        })
    }

    /// Sends like [`send`](Self::send), first in line on every sink, then
    /// waits until the alert is suppressed, delivered, or has failed once
    /// on every sink (a refused connection ends the wait at once; the lane
    /// keeps retrying as long as the process lives), at most `timeout`. On
    /// the delivery thread it doesn't wait (the thread can't deliver while
    /// it waits). `true` if the alert is settled.
    pub(crate) fn send_and_wait(&self, alert: Alert, timeout: Duration) -> bool {
        let done = Arc::new(Done::default());
        if !self.inner.send(alert, Some(done.clone())) {
            return true;
        }
        if self.is_delivery_thread() {
            return false;
        }
        done.wait(timeout)
    }

    /// Whether undelivered alerts are kept in the store's outbox.
    pub(crate) fn keeps_outbox(&self) -> bool {
        self.inner.outbox
    }

    /// Whether the current thread is this alerter's delivery thread.
    pub(crate) fn is_delivery_thread(&self) -> bool {
        self.inner.engine.is_current()
    }

    /// watchpost's thread, which this alerter delivers on.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Evaluates `watcher` once per tick of `clock` until it is dropped:
    /// on this alerter's thread for the system clock, when advanced for a
    /// manual one.
    pub(crate) fn watch(&self, clock: &Clock, watcher: Weak<dyn Tick>) {
        clock.register(self.inner.engine.watchers(), watcher);
    }
}

/// The key of the looping incident for alerts keyed `key`.
fn looping_key(key: &str) -> String {
    format!("looping:{key}")
}

impl Inner {
    /// Sends `alert` unless suppressed; `true` if it was queued (and
    /// `done` will be signalled).
    fn send(&self, alert: Alert, done: Option<Arc<Done>>) -> bool {
        let key = alert.dedupe_key();
        let (seen, looping) = self.gate.check(&key, self.clock.now());
        if let Some(looping) = looping {
            let looping_alert = looping_alert(&alert, looping);
            self.fire(&looping_key(&key), looping_alert);
        }
        match seen {
            Seen::Suppressed => {
                self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
                false
            }
            Seen::Deliver { similar } => {
                let key = key.into_owned();
                self.enqueue(alert, key, NotificationKind::Alert, similar, None, done);
                true
            }
        }
    }

    /// [`send`](Self::send) for an alert whose dedupe `key` is known
    /// before the alert is: `build` runs only when the alert will be
    /// delivered (or a loop reported), so that a suppressed duplicate costs
    /// the gate's check and nothing else.
    #[cfg(feature = "tracing-layer")]
    pub(crate) fn send_lazy(&self, key: &str, build: impl FnOnce() -> Alert) -> bool {
        let (seen, looping) = self.gate.check(key, self.clock.now());
        if looping.is_none() && matches!(seen, Seen::Suppressed) {
            self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let alert = build().key(key);
        if let Some(looping) = looping {
            let looping_alert = looping_alert(&alert, looping);
            self.fire(&looping_key(key), looping_alert);
        }
        match seen {
            Seen::Suppressed => {
                self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
                false
            }
            Seen::Deliver { similar } => {
                self.enqueue(
                    alert,
                    key.to_owned(),
                    NotificationKind::Alert,
                    similar,
                    None,
                    None,
                );
                true
            }
        }
    }

    fn fire(&self, key: &str, alert: Alert) {
        let at = self.clock.system_time();
        if self.gate.open(key, &alert, at) {
            let alert = alert.key(key);
            self.enqueue(
                alert,
                key.to_owned(),
                NotificationKind::Firing,
                0,
                Some(at),
                None,
            );
        } else {
            self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn resolve(&self, key: &str) {
        if let Some(incident) = self.gate.close(key) {
            let now = self.clock.system_time();
            let duration = now.duration_since(incident.started_at).unwrap_or_default();
            self.enqueue(
                incident.alert,
                key.to_owned(),
                NotificationKind::Resolved { duration },
                0,
                Some(incident.started_at),
                None,
            );
        }
    }

    fn enqueue(
        &self,
        alert: Alert,
        key: String,
        kind: NotificationKind,
        similar: u64,
        started_at: Option<SystemTime>,
        done: Option<Arc<Done>>,
    ) {
        let op = match kind {
            NotificationKind::Alert => StoreOp::Claim { similar },
            NotificationKind::Firing => StoreOp::Open,
            NotificationKind::Resolved { .. } => StoreOp::Close,
        };
        let notification = Notification {
            alert,
            service: self.service.clone(),
            kind,
            key,
            similar,
            window: self.gate.window(),
            time: self.clock.system_time(),
            started_at,
        };
        self.queue.push(Job {
            notification,
            op,
            done,
            busy: self.clock.busy(),
        });
    }
}

/// Resolves the looping incidents of keys that cooled down.
impl Tick for Inner {
    fn tick(&self, now: Instant) {
        for key in self.gate.cooled(now) {
            self.resolve(&looping_key(&key));
        }
    }
}

/// The "looping" alert for a key that just became hot, built from the
/// occurrence that made it so.
fn looping_alert(alert: &Alert, looping: Looping) -> Alert {
    let mut detail = format!(
        "Fired {} times in the last {} (deduplicated: most were not sent). \
         A retry loop or a stuck job is the usual cause; each occurrence may cost money.",
        looping.count,
        super::notification::format_duration(looping.span),
    );
    if let Some(original) = alert.detail_text() {
        detail.push_str("\n\n");
        detail.push_str(original);
    }
    let mut looping_alert = Alert::new(alert.severity(), format!("Looping: {}", alert.title()))
        .detail(detail)
        .label("occurrences", looping.count.to_string());
    for (name, value) in alert.labels() {
        looping_alert = looping_alert.label(name, value);
    }
    looping_alert
}

/// Configures an [`Alerter`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::alert::{Alerter, LogSink};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::builder()
///     .service("checkout-api")
///     .environment("production")
///     .version(env!("CARGO_PKG_VERSION"))
///     .sink(LogSink::new())
///     .dedupe_window(Duration::from_secs(600))
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct AlerterBuilder {
    pub(crate) service: ServiceInfo,
    pub(crate) sinks: Vec<Arc<dyn Sink>>,
    store: Option<Arc<dyn AlertStore>>,
    window: Duration,
    queue_capacity: usize,
    max_keys: usize,
    pub(crate) delivery: DeliveryConfig,
    clock: Clock,
    looping: Option<HotRule>,
}

impl fmt::Debug for AlerterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlerterBuilder")
            .field("service", &self.service)
            .field("sinks", &self.sinks)
            .field("store", &self.store)
            .field("window", &self.window)
            .field("queue_capacity", &self.queue_capacity)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl Default for AlerterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AlerterBuilder {
    /// Defaults: service named after the executable, the machine's host
    /// name, no sinks (the log sink is used when none is added), a 5-minute
    /// dedupe window, a 4096-alert queue, a sink that fails probed again
    /// with backoff from 1 s to 20 s, an alert given up once it is 10
    /// minutes old.
    ///
    /// Most services build a [`Watchpost`](crate::Watchpost) instead,
    /// which builds its alerter with these and wires it to everything
    /// else (`Watchpost::builder().alerts(|a| ..)` changes them).
    pub fn new() -> Self {
        Self {
            service: ServiceInfo::new(default_service_name()),
            sinks: Vec::new(),
            store: None,
            window: Duration::from_secs(300),
            queue_capacity: 4096,
            max_keys: 10_000,
            delivery: DeliveryConfig {
                max_attempts: None,
                max_age: Duration::from_secs(600),
                backoff_initial: Duration::from_secs(1),
                backoff_max: Duration::from_secs(20),
                attempt_timeout: Duration::from_secs(10),
                store_timeout: Duration::from_secs(2),
            },
            clock: Clock::system(),
            looping: Some(HotRule {
                threshold: 100,
                window: Duration::from_secs(3600),
            }),
        }
    }

    /// The service's name, shown in every message.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service.name = name.into();
        self
    }

    /// The environment (`production`, `staging`).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.service.environment = Some(environment.into());
        self
    }

    /// The host or pod name (default: the machine's host name).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.service.host = host.into();
        self
    }

    /// The running version (`env!("CARGO_PKG_VERSION")`, a git sha).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.service.version = Some(version.into());
        self
    }

    /// Adds a sink. Several can be added; each gets every alert, paced and
    /// retried on its own.
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// The store behind dedupe and incidents (default: a fresh
    /// [`MemoryStore`]). Share one between alerters (or use Redis) so
    /// several processes send one message.
    pub fn store(mut self, store: Arc<dyn AlertStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Alerts with the same key inside this window are suppressed and
    /// counted (default 5 minutes).
    pub fn dedupe_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The queue's size (default 4096). When full, the oldest alert is
    /// dropped and counted in [`Stats::dropped`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Caps the delivery attempts per alert and sink for 5xx answers,
    /// timeouts and connection errors. By default there is no cap: an
    /// alert is retried until its [`max_age`](Self::max_age). Rate-limit
    /// waits don't count.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.delivery.max_attempts = Some(attempts);
        self
    }

    /// An alert still undelivered this long after it reached a sink's
    /// queue (the sink down, rate-limited or backed up) is given up,
    /// counted, logged, reported on the other sinks and summarized on
    /// this one once it delivers again (default 10 minutes; a sink can
    /// set its own with [`Sink::max_age`]).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.delivery.max_age = age;
        self
    }

    /// The backoff between probes of a sink that fails: `initial`,
    /// doubling per failure up to `max`, with jitter (defaults 1 s and
    /// 20 s, so a sink that comes back is used again within 20 s). One
    /// notification probes; the others wait behind it, in order.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.delivery.backoff_initial = initial;
        self.delivery.backoff_max = max;
        self
    }

    /// How long one delivery attempt may take (default 10 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.delivery.attempt_timeout = timeout;
        self
    }

    /// Looping alerts, the retry-loop detector: when alerts with one key
    /// occur more than `count` times within `window` (default 100 in an
    /// hour), one
    /// incident `looping:<key>` fires, "Looping: `title`", saying how many
    /// times it fired, although dedupe keeps suppressing the alert itself.
    /// It resolves once the pace over the last quarter of the window,
    /// scaled to the window, is under half of `count` (for the default: 15
    /// quiet minutes after the loop stops).
    pub fn looping_threshold(mut self, count: u32, window: Duration) -> Self {
        self.looping = Some(HotRule {
            threshold: u64::from(count),
            window,
        });
        self
    }

    /// No looping alerts: a key that keeps recurring is only deduplicated.
    pub fn disable_looping_alerts(mut self) -> Self {
        self.looping = None;
        self
    }

    /// The clock behind dedupe windows, incidents and message times
    /// (default [`Clock::system`]). Tests pass a
    /// [`ManualClock`](crate::monitor::ManualClock)'s clock to move time
    /// by hand.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the alerter and starts its delivery thread.
    ///
    /// # Errors
    ///
    /// A zero window, queue capacity, attempt count or timeout, or the
    /// thread could not start.
    pub fn build(self) -> Result<Alerter, ConfigError> {
        let zero = |name: &str| ConfigError::invalid(name, "must be greater than zero");
        if self.window.is_zero() {
            return Err(zero("dedupe_window"));
        }
        if self.queue_capacity == 0 {
            return Err(zero("queue_capacity"));
        }
        if self.delivery.max_attempts == Some(0) {
            return Err(zero("max_attempts"));
        }
        if self.delivery.max_age.is_zero() {
            return Err(zero("max_age"));
        }
        if self.delivery.attempt_timeout.is_zero() {
            return Err(zero("attempt_timeout"));
        }
        if let Some(rule) = self.looping {
            if rule.threshold == 0 {
                return Err(zero("looping_threshold count"));
            }
            if rule.window.is_zero() {
                return Err(zero("looping_threshold window"));
            }
        }
        if let Some(sink) = self
            .sinks
            .iter()
            .find(|s| s.max_age().is_some_and(|a| a.is_zero()))
        {
            return Err(ConfigError::invalid(
                format!("max_age of sink {}", sink.name()),
                "must be greater than zero",
            ));
        }
        let mut sinks = self.sinks;
        if sinks.is_empty() {
            sinks.push(Arc::new(LogSink::new()));
        }
        let names = sinks.iter().map(|s| s.name().to_owned()).collect();
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn AlertStore>);
        let counters = Arc::new(Counters::new(sinks.len()));
        let outbox = store.keeps_outbox();
        let queue = Arc::new(Queue::new(self.queue_capacity, counters.clone()));
        let engine = worker::spawn(Delivery {
            queue: queue.clone(),
            sinks,
            store,
            config: self.delivery,
            counters: counters.clone(),
            clock: self.clock.clone(),
            host: self.service.host.clone(),
        })
        .map_err(ConfigError::Spawn)?;
        let origin = self.clock.now();
        let inner = Arc::new(Inner {
            service: Arc::new(self.service),
            gate: Gate::new(self.window, self.max_keys, self.looping, origin),
            clock: self.clock,
            queue,
            counters,
            sinks: names,
            engine,
            outbox,
        });
        if self.looping.is_some() {
            let weak: Weak<dyn Tick> = Arc::downgrade(&inner) as Weak<dyn Tick>;
            inner.clock.register(inner.engine.watchers(), weak);
        }
        Ok(Alerter { inner })
    }
}

fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "app".to_owned())
}
