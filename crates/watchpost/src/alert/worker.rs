//! The delivery thread: a bounded queue drained by one thread with its own
//! current-thread Tokio runtime, one lane per sink (so a slow or paced sink
//! never holds up the others), retries, pacing and failure logging.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::Notify;

use super::notification::{Notification, NotificationKind};
use super::sink::{Pacing, Sink, SinkError, SinkErrorKind};
use super::store::{AlertStore, Claim};
use crate::engine::Engine;

/// Target of watchpost's own delivery logs. The tracing layer ignores it,
/// and nothing logged here is ever routed back into an `Alerter`.
pub(crate) const LOG_TARGET: &str = "watchpost::alert::delivery";

thread_local! {
    static ON_DELIVERY_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is an alert delivery thread (where a panic
/// or an error event must not become an alert: that would loop).
pub(crate) fn on_delivery_thread() -> bool {
    ON_DELIVERY_THREAD.with(Cell::get)
}

/// The delivery settings, from the builder.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryConfig {
    pub(crate) max_attempts: u32,
    pub(crate) max_age: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) store_timeout: Duration,
}

/// Counters behind [`Stats`](super::Stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) suppressed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Per sink, in order: switched off for the life of the process (a
    /// wrong token, a deleted webhook).
    pub(crate) disabled: Box<[AtomicBool]>,
}

impl Counters {
    pub(crate) fn new(sinks: usize) -> Self {
        Self {
            disabled: (0..sinks).map(|_| AtomicBool::new(false)).collect(),
            ..Self::default()
        }
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Set when a job is finished (delivered, failed, dropped or suppressed);
/// what the panic hook waits on.
#[derive(Debug, Default)]
pub(crate) struct Done {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    fn set(&self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    /// Waits until set or `timeout`; `true` if set.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let guard = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |done| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// What the store is asked before delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Claim { similar: u64 },
    Open,
    Close,
}

#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) notification: Notification,
    pub(crate) op: StoreOp,
    pub(crate) done: Option<Arc<Done>>,
}

/// The queue between callers and the delivery thread.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    wake: Notify,
    idle: Condvar,
    capacity: usize,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    /// Jobs queued or being delivered.
    pending: usize,
    closed: bool,
}

impl Queue {
    pub(crate) fn new(capacity: usize, counters: Arc<Counters>) -> Self {
        Self {
            state: Mutex::default(),
            wake: Notify::new(),
            idle: Condvar::new(),
            capacity: capacity.max(1),
            counters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job; when full, drops (and counts) the oldest.
    pub(crate) fn push(&self, job: Job) {
        let dropped = {
            let mut state = self.lock();
            if state.closed {
                drop(state);
                Counters::add(&self.counters.dropped);
                if let Some(done) = job.done {
                    done.set();
                }
                return;
            }
            let dropped = if state.jobs.len() >= self.capacity {
                state.jobs.pop_front()
            } else {
                None
            };
            state.jobs.push_back(job);
            if dropped.is_none() {
                state.pending += 1;
            }
            dropped
        };
        self.wake.notify_one();
        if let Some(old) = dropped {
            Counters::add(&self.counters.dropped);
            if let Some(done) = old.done {
                done.set();
            }
        }
    }

    async fn pop(&self) -> Option<Job> {
        loop {
            {
                let mut state = self.lock();
                if let Some(job) = state.jobs.pop_front() {
                    return Some(job);
                }
                if state.closed {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }

    /// A job is finished.
    fn finish(&self) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(1);
        if state.pending == 0 {
            self.idle.notify_all();
        }
    }

    /// Waits until nothing is queued or in delivery; `true` if so within
    /// `timeout`.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .idle
            .wait_timeout_while(state, timeout, |s| s.pending > 0)
            .unwrap_or_else(PoisonError::into_inner);
        state.pending == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// No more jobs: the worker delivers what is queued and stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// A job fanned out to several lanes: finished when the last lane is done.
#[derive(Debug)]
struct Fanout {
    remaining: AtomicUsize,
    done: Option<Arc<Done>>,
    queue: Arc<Queue>,
}

impl Fanout {
    fn part_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.finish();
            if let Some(done) = &self.done {
                done.set();
            }
        }
    }
}

#[derive(Debug)]
struct Part {
    notification: Arc<Notification>,
    fanout: Arc<Fanout>,
    queued_at: Instant,
}

/// One sink's queue.
#[derive(Debug)]
struct Lane {
    sink: Arc<dyn Sink>,
    parts: Mutex<(VecDeque<Part>, bool)>,
    wake: Notify,
    capacity: usize,
}

impl Lane {
    fn push(&self, part: Part, counters: &Counters) {
        let dropped = {
            let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped = if parts.0.len() >= self.capacity {
                parts.0.pop_front()
            } else {
                None
            };
            parts.0.push_back(part);
            dropped
        };
        self.wake.notify_one();
        if let Some(old) = dropped {
            Counters::add(&counters.dropped);
            old.fanout.part_done();
        }
    }

    fn close(&self) {
        self.parts.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.wake.notify_one();
    }

    async fn pop(&self) -> Option<Part> {
        loop {
            {
                let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(part) = parts.0.pop_front() {
                    return Some(part);
                }
                if parts.1 {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }
}

/// Marks the calling thread as watchpost's, where a panic or an error
/// event must not become an alert.
pub(crate) fn mark_delivery_thread() {
    ON_DELIVERY_THREAD.with(|f| f.set(true));
}

/// Starts watchpost's thread, delivering what `queue` receives.
pub(crate) fn spawn(
    queue: Arc<Queue>,
    sinks: Vec<Arc<dyn Sink>>,
    store: Arc<dyn AlertStore>,
    config: DeliveryConfig,
    counters: Arc<Counters>,
) -> std::io::Result<Engine> {
    Engine::start(run(queue, sinks, store, config, counters))
}

async fn run(
    queue: Arc<Queue>,
    sinks: Vec<Arc<dyn Sink>>,
    store: Arc<dyn AlertStore>,
    config: DeliveryConfig,
    counters: Arc<Counters>,
) {
    let capacity = queue.capacity;
    let lanes: Vec<Arc<Lane>> = sinks
        .into_iter()
        .map(|sink| {
            Arc::new(Lane {
                sink,
                parts: Mutex::default(),
                wake: Notify::new(),
                capacity,
            })
        })
        .collect();
    let tasks: Vec<_> = lanes
        .iter()
        .enumerate()
        .map(|(i, lane)| {
            tokio::spawn(drive_lane(
                i,
                lane.clone(),
                config.clone(),
                counters.clone(),
            ))
        })
        .collect();
    let store_log = Mutex::new(FailureLog::default());
    // The store is asked about several alerts at once, so a slow or dead
    // one delays each alert by its timeout at most, not by the sum of
    // theirs. Questions about one key wait for the one before (an
    // incident's close after its open), and the answers are taken in
    // order, so a firing still goes out before its resolution.
    let mut settling = FuturesOrdered::new();
    let mut chains: HashMap<String, Chain> = HashMap::new();
    let mut seq = 0_u64;
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((seq, settled)) = settling.next(), if !settling.is_empty() => {
                let (seq, settled): (u64, Settled) = (seq, settled);
                if chains.get(&settled.key).is_some_and(|c| c.seq == seq) {
                    chains.remove(&settled.key);
                }
                dispatch(settled, &lanes, &queue, &counters);
            }
            job = queue.pop(), if open && settling.len() < MAX_SETTLING => match job {
                Some(job) => {
                    seq += 1;
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let before = chains
                        .insert(job.notification.key.clone(), Chain { seq, done: rx.shared() })
                        .map(|c| c.done);
                    let (store, config, log) = (&*store, &config, &store_log);
                    settling.push_back(async move {
                        if let Some(before) = before {
                            let _ = before.await;
                        }
                        let settled = settle_job(job, store, config, log).await;
                        let _ = tx.send(());
                        (seq, settled)
                    });
                }
                None => open = false,
            },
            else => break,
        }
    }
    for lane in &lanes {
        lane.close();
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Alerts whose store answers are awaited at once.
const MAX_SETTLING: usize = 64;

/// The last question asked about a key: done when its answer is in.
struct Chain {
    seq: u64,
    done: futures_util::future::Shared<tokio::sync::oneshot::Receiver<()>>,
}

/// A job once the store answered: the notification to deliver (`None`:
/// nothing to deliver), its key and operation, and who waits for it.
struct Settled {
    notification: Option<Notification>,
    key: String,
    op: StoreOp,
    done: Option<Arc<Done>>,
}

async fn settle_job(
    job: Job,
    store: &dyn AlertStore,
    config: &DeliveryConfig,
    log: &Mutex<FailureLog>,
) -> Settled {
    let key = job.notification.key.clone();
    Settled {
        notification: settle(job.notification, job.op, store, config, log).await,
        key,
        op: job.op,
        done: job.done,
    }
}

/// Hands a settled job to every sink's lane.
fn dispatch(job: Settled, lanes: &[Arc<Lane>], queue: &Arc<Queue>, counters: &Counters) {
    let Some(notification) = job.notification else {
        if matches!(job.op, StoreOp::Claim { .. }) {
            Counters::add(&counters.suppressed);
        }
        queue.finish();
        if let Some(done) = job.done {
            done.set();
        }
        return;
    };
    if lanes.is_empty() {
        queue.finish();
        if let Some(done) = job.done {
            done.set();
        }
        return;
    }
    let notification = Arc::new(notification);
    let fanout = Arc::new(Fanout {
        remaining: AtomicUsize::new(lanes.len()),
        done: job.done,
        queue: queue.clone(),
    });
    let queued_at = Instant::now();
    for lane in lanes {
        lane.push(
            Part {
                notification: notification.clone(),
                fanout: fanout.clone(),
                queued_at,
            },
            counters,
        );
    }
}

/// Asks the store; `None` when nothing should be delivered.
async fn settle(
    mut n: Notification,
    op: StoreOp,
    store: &dyn AlertStore,
    config: &DeliveryConfig,
    log: &Mutex<FailureLog>,
) -> Option<Notification> {
    let timeout = config.store_timeout;
    let failed = |e: String| {
        log.lock().unwrap_or_else(PoisonError::into_inner).warn(
            "store",
            &format!("alert store unavailable, delivering anyway: {e}"),
        );
    };
    match op {
        StoreOp::Claim { similar } => {
            let claim =
                AssertUnwindSafe(async { store.claim(&n.key, n.time, n.window, similar).await })
                    .catch_unwind();
            match tokio::time::timeout(timeout, claim).await {
                Ok(Ok(Ok(Claim::Deliver { similar }))) => n.similar = similar,
                Ok(Ok(Ok(Claim::Suppressed))) => return None,
                Ok(Ok(Err(e))) => failed(e.to_string()),
                Ok(Err(_)) => failed("the store panicked".to_owned()),
                Err(_) => failed(format!("no answer within {timeout:?}")),
            }
        }
        StoreOp::Open => {
            let started = n.started_at.unwrap_or(n.time);
            let open = AssertUnwindSafe(async { store.open_incident(&n.key, started).await })
                .catch_unwind();
            match tokio::time::timeout(timeout, open).await {
                Ok(Ok(Ok(true))) => {}
                Ok(Ok(Ok(false))) => return None,
                Ok(Ok(Err(e))) => failed(e.to_string()),
                Ok(Err(_)) => failed("the store panicked".to_owned()),
                Err(_) => failed(format!("no answer within {timeout:?}")),
            }
        }
        StoreOp::Close => {
            let close =
                AssertUnwindSafe(async { store.close_incident(&n.key).await }).catch_unwind();
            match tokio::time::timeout(timeout, close).await {
                Ok(Ok(Ok(Some(started)))) => {
                    n.started_at = Some(started);
                    let duration = n.time.duration_since(started).unwrap_or_default();
                    n.kind = NotificationKind::Resolved { duration };
                }
                Ok(Ok(Ok(None))) => return None,
                Ok(Ok(Err(e))) => failed(e.to_string()),
                Ok(Err(_)) => failed("the store panicked".to_owned()),
                Err(_) => failed(format!("no answer within {timeout:?}")),
            }
        }
    }
    Some(n)
}

async fn drive_lane(
    index: usize,
    lane: Arc<Lane>,
    config: DeliveryConfig,
    counters: Arc<Counters>,
) {
    let mut pacer = Pacer::new(lane.sink.pacing());
    let mut log = Logs::default();
    let mut disabled = false;
    let mut rng = Jitter::new();
    while let Some(part) = lane.pop().await {
        if disabled {
            Counters::add(&counters.failed);
        } else {
            match deliver(&*lane.sink, &part, &config, &mut pacer, &mut log, &mut rng).await {
                Ok(()) => Counters::add(&counters.sent),
                Err(e) => {
                    Counters::add(&counters.failed);
                    if e.kind() == SinkErrorKind::Disabled {
                        disabled = true;
                        if let Some(flag) = counters.disabled.get(index) {
                            flag.store(true, Ordering::Relaxed);
                        }
                        crate::loud::say(&format!(
                            "alert sink {} is disabled for the life of the process: {e}. \
                             Alerts no longer reach it; fix its configuration and restart.",
                            lane.sink.name()
                        ));
                    }
                }
            }
        }
        part.fanout.part_done();
    }
}

/// Delivers one part with retries; the error is the last attempt's.
async fn deliver(
    sink: &dyn Sink,
    part: &Part,
    config: &DeliveryConfig,
    pacer: &mut Pacer,
    log: &mut Logs,
    jitter: &mut Jitter,
) -> Result<(), SinkError> {
    let name = sink.name();
    let mut failures = 0u32;
    let deadline = part.queued_at + config.max_age;
    loop {
        pacer.wait().await;
        // `async` so a sink that panics before returning its future is
        // caught too.
        let attempt =
            AssertUnwindSafe(async { sink.deliver(&part.notification).await }).catch_unwind();
        let error = match tokio::time::timeout(config.attempt_timeout, attempt).await {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(e))) => e,
            Ok(Err(_)) => SinkError::rejected("the sink panicked"),
            Err(_) => SinkError::transient(format!(
                "no answer within {}",
                super::notification::format_duration(config.attempt_timeout)
            )),
        };
        let wait = match error.kind() {
            SinkErrorKind::RateLimited { retry_after } => retry_after,
            SinkErrorKind::Transient => {
                failures += 1;
                if failures >= config.max_attempts {
                    log.given_up.warn(
                        name,
                        &format!("alert not delivered after {failures} attempts: {error}"),
                    );
                    return Err(error);
                }
                jitter.backoff(config.backoff_initial, config.backoff_max, failures)
            }
            SinkErrorKind::Rejected => {
                log.given_up
                    .warn(name, &format!("alert rejected, not retried: {error}"));
                return Err(error);
            }
            SinkErrorKind::Disabled => return Err(error),
        };
        if Instant::now() + wait > deadline {
            log.given_up.warn(
                name,
                &format!(
                    "alert dropped: still failing after {} ({error})",
                    super::notification::format_duration(config.max_age)
                ),
            );
            return Err(error);
        }
        log.retrying.warn(
            name,
            &format!(
                "alert delivery failed, retrying in {}: {error}",
                super::notification::format_duration(wait)
            ),
        );
        tokio::time::sleep(wait).await;
    }
}

/// A sink's two failure logs: retries, and alerts given up. Each logs at
/// most once a minute, so a retry warning never hides a give-up.
#[derive(Debug, Default)]
struct Logs {
    retrying: FailureLog,
    given_up: FailureLog,
}

/// Logs a sink's failures at most once a minute, saying how many it
/// skipped in between.
#[derive(Debug, Default)]
struct FailureLog {
    last: Option<Instant>,
    skipped: u64,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn warn(&mut self, sink: &str, message: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            self.skipped += 1;
            return;
        }
        if self.skipped > 0 {
            tracing::warn!(
                target: LOG_TARGET,
                sink,
                skipped = self.skipped,
                "{message} (+{} similar failures not logged)",
                self.skipped
            );
        } else {
            tracing::warn!(target: LOG_TARGET, sink, "{message}");
        }
        self.last = Some(now);
        self.skipped = 0;
    }
}

/// Waits out a sink's [`Pacing`].
#[derive(Debug)]
struct Pacer {
    pacing: Pacing,
    recent: VecDeque<tokio::time::Instant>,
}

impl Pacer {
    fn new(pacing: Pacing) -> Self {
        Self {
            pacing,
            recent: VecDeque::new(),
        }
    }

    async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        let mut at = now;
        if let Some(&last) = self.recent.back() {
            at = at.max(last + self.pacing.min_interval);
        }
        if let Some(n) = self.pacing.per_minute {
            let minute = Duration::from_secs(60);
            while self
                .recent
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= minute)
            {
                self.recent.pop_front();
            }
            if self.recent.len() >= n.max(1) as usize {
                if let Some(&oldest) = self.recent.front() {
                    at = at.max(oldest + minute);
                }
            }
        }
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        self.recent.push_back(tokio::time::Instant::now());
        let keep = self.pacing.per_minute.map_or(1, |n| n.max(1) as usize);
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
    }
}

/// A tiny xorshift for backoff jitter (no need for a crypto RNG).
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        );
        Self(h.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Exponential backoff with "equal jitter": between half and all of
    /// `initial * 2^(attempt-1)`, capped at `max`.
    fn backoff(&mut self, initial: Duration, max: Duration, attempt: u32) -> Duration {
        let exp = initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(max);
        let half = exp / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let extra = if nanos == 0 { 0 } else { self.next() % nanos };
        half + Duration::from_nanos(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        let mut j = Jitter::new();
        let initial = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 1..40 {
            let d = j.backoff(initial, max, attempt);
            let exp = initial.saturating_mul(1 << (attempt - 1).min(20)).min(max);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_spaces_deliveries_and_caps_the_minute() {
        let mut p = Pacer::new(Pacing::every(Duration::from_secs(1)).per_minute(20));
        let t0 = tokio::time::Instant::now();
        for _ in 0..21 {
            p.wait().await;
        }
        // 20 a second apart, then the 21st waits for the minute.
        let elapsed = t0.elapsed();
        assert!(elapsed >= Duration::from_secs(60), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(62), "{elapsed:?}");
    }
}
