//! The delivery thread: a bounded queue drained by one thread with its own
//! current-thread Tokio runtime, where the store is asked about each alert
//! (dedupe, incidents) before it is handed to one [lane](super::lane) per
//! sink, so a slow, paced or failing sink never holds up the others.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::Notify;

use super::lane::{self, Entry, FailureLog, Fanout, Lane, SinkCounters};
use super::notification::{Notification, NotificationKind};
use super::outbox::{self, Outbox, OutboxRecord};
use super::sink::Sink;
use super::store::{AlertStore, Claim};
use crate::clock::{Busy, Clock};
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
    /// `None`: retried until the max age.
    pub(crate) max_attempts: Option<u32>,
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
    /// Per sink, in order.
    pub(crate) sinks: Box<[Arc<SinkCounters>]>,
}

impl Counters {
    pub(crate) fn new(sinks: usize) -> Self {
        Self {
            sinks: (0..sinks).map(|_| Arc::default()).collect(),
            ..Self::default()
        }
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Set once a job is settled: suppressed, dropped, or tried once on every
/// sink (delivered, or failed at least once: a refused connection is final
/// for whoever waits, the lane keeps retrying); what the panic hook waits
/// on.
#[derive(Debug, Default)]
pub(crate) struct Done {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    pub(crate) fn set(&self) {
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
    /// Held until the job reaches the lanes, so a
    /// [`ManualClock`](crate::ManualClock) step waits for it.
    pub(crate) busy: Busy,
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
    /// Jobs not yet tried once on every sink (delivered, or failed at
    /// least once): what a flush during a panic waits for.
    untried: usize,
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
                state.untried += 1;
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

    /// One more message to wait for (one a lane made up itself, or one
    /// adopted from the outbox), not tried yet.
    pub(crate) fn add_pending(&self) {
        let mut state = self.lock();
        state.pending += 1;
        state.untried += 1;
    }

    /// A job was tried once on every sink (or will never be: suppressed,
    /// no sinks). Comes before its [`finish`](Self::finish).
    pub(crate) fn tried(&self) {
        let mut state = self.lock();
        state.untried = state.untried.saturating_sub(1);
        if state.untried == 0 {
            self.idle.notify_all();
        }
    }

    /// A job is finished.
    pub(crate) fn finish(&self) {
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

    /// Waits until every job was tried once on every sink (retries not
    /// waited for); `true` if nothing is queued or in delivery any more
    /// either.
    pub(crate) fn wait_tried(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .idle
            .wait_timeout_while(state, timeout, |s| s.untried > 0)
            .unwrap_or_else(PoisonError::into_inner);
        state.pending == 0
    }

    /// Jobs queued or on their way through the lanes.
    pub(crate) fn pending(&self) -> usize {
        self.lock().pending
    }

    /// No more jobs: the worker delivers what is queued and stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// Marks the calling thread as watchpost's, where a panic or an error
/// event must not become an alert.
pub(crate) fn mark_delivery_thread() {
    ON_DELIVERY_THREAD.with(|f| f.set(true));
}

/// What the delivery thread works with.
pub(crate) struct Delivery {
    pub(crate) queue: Arc<Queue>,
    pub(crate) sinks: Vec<Arc<dyn Sink>>,
    pub(crate) store: Arc<dyn AlertStore>,
    pub(crate) config: DeliveryConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) clock: Clock,
    /// The host name, for this process's name as an outbox owner.
    pub(crate) host: String,
}

/// Starts watchpost's thread, delivering what `queue` receives.
pub(crate) fn spawn(delivery: Delivery) -> std::io::Result<Engine> {
    Engine::start(run(delivery))
}

async fn run(delivery: Delivery) {
    let Delivery {
        queue,
        sinks,
        store,
        config,
        counters,
        clock,
        host,
    } = delivery;
    let capacity = queue.capacity;
    let outbox = Outbox::of(&store, &host, config.store_timeout);
    let lanes: Arc<[Arc<Lane>]> = sinks
        .into_iter()
        .zip(counters.sinks.iter())
        .map(|(sink, c)| {
            Arc::new(Lane::new(
                sink,
                capacity,
                clock.clone(),
                c.clone(),
                queue.clone(),
                outbox.clone(),
            ))
        })
        .collect();
    let names: Vec<String> = lanes.iter().map(|l| l.sink.name().to_owned()).collect();
    // The longest any sink keeps an alert: how long its record is kept.
    let keep = lanes
        .iter()
        .map(|l| l.sink.max_age().unwrap_or(config.max_age))
        .max()
        .unwrap_or(config.max_age);
    let tasks: Vec<_> = (0..lanes.len())
        .map(|i| {
            tokio::spawn(lane::drive(
                i,
                lanes.clone(),
                config.clone(),
                counters.clone(),
            ))
        })
        .collect();
    let store_log = Mutex::new(FailureLog::new(clock.clone(), "store failure(s)"));
    let adopting = outbox.clone().map(|outbox| {
        tokio::spawn(adopt_orphans(
            outbox,
            lanes.clone(),
            queue.clone(),
            clock.clone(),
        ))
    });
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
                dispatch(settled, &lanes, &queue, &counters, &clock, &config);
            }
            job = queue.pop(), if open && settling.len() < MAX_SETTLING => match job {
                Some(job) => {
                    seq += 1;
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let before = chains
                        .insert(job.notification.key.clone(), Chain { seq, done: rx.shared() })
                        .map(|c| c.done);
                    let (store, config, log) = (&*store, &config, &store_log);
                    let persist = outbox.as_deref().map(|o| Persist {
                        outbox: o,
                        sinks: &names,
                        until: clock.system_time() + keep,
                    });
                    settling.push_back(async move {
                        if let Some(before) = before {
                            let _ = before.await;
                        }
                        let settled = settle_job(job, store, config, log, persist).await;
                        let _ = tx.send(());
                        (seq, settled)
                    });
                }
                None => open = false,
            },
            else => break,
        }
    }
    for lane in lanes.iter() {
        lane.close();
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(settling);
    if let Some(outbox) = &outbox {
        if let Some(task) = adopting {
            task.abort();
        }
        // What the lanes still held is in the outbox: the next process
        // (or another replica) takes it over at once.
        if let Err(e) = outbox.release().await {
            store_log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .warn("store", &e, 1);
        }
    }
}

/// Where a settled alert is kept until every sink has it.
#[derive(Clone, Copy)]
struct Persist<'a> {
    outbox: &'a Outbox,
    sinks: &'a [String],
    until: std::time::SystemTime,
}

/// Takes over, now and every few seconds, the outbox records of processes
/// that stopped or died, and hands each to the lanes of the sinks that
/// still need it.
async fn adopt_orphans(
    outbox: Arc<Outbox>,
    lanes: Arc<[Arc<Lane>]>,
    queue: Arc<Queue>,
    clock: Clock,
) {
    let mut log = FailureLog::new(clock.clone(), "outbox failure(s)");
    loop {
        match outbox.adopt().await {
            Ok(records) => {
                for record in records {
                    adopt(&outbox, record, &lanes, &queue, &clock, &mut log).await;
                }
            }
            Err(e) => log.warn("store", &e, 1),
        }
        clock.sleep(outbox::RENEW_EVERY).await;
    }
}

/// One adopted record, handed to the lanes it is still due on.
async fn adopt(
    outbox: &Outbox,
    record: OutboxRecord,
    lanes: &[Arc<Lane>],
    queue: &Arc<Queue>,
    clock: &Clock,
    log: &mut FailureLog,
) {
    let Some(notification) = outbox::decode(&record.body) else {
        log.warn(
            "store",
            &format!(
                "outbox record {} could not be read (written by another watchpost version?); dropped",
                record.id
            ),
            1,
        );
        for sink in &record.sinks {
            let _ = outbox.ack(&record.id, sink).await;
        }
        return;
    };
    let (here, gone): (Vec<&String>, Vec<&String>) = record
        .sinks
        .iter()
        .partition(|s| lanes.iter().any(|l| l.sink.name() == s.as_str()));
    for sink in gone {
        log.warn(
            sink,
            &format!(
                "an alert left in the outbox for sink {sink} can't be delivered: \
                 no such sink here; dropped: {}",
                notification.headline()
            ),
            1,
        );
        let _ = outbox.ack(&record.id, sink).await;
    }
    if here.is_empty() {
        return;
    }
    tracing::info!(
        target: LOG_TARGET,
        id = %record.id,
        "delivering an alert another process left undelivered: {}",
        notification.headline()
    );
    let left = record
        .deadline
        .duration_since(clock.system_time())
        .unwrap_or_default();
    let deadline = clock.now() + left;
    let ticket: Arc<str> = record.id.into();
    let notification = Arc::new(notification);
    queue.add_pending();
    let fanout = Arc::new(Fanout::new(here.len(), None, queue.clone()));
    for lane in lanes
        .iter()
        .filter(|l| here.iter().any(|s| *s == l.sink.name()))
    {
        let entry = Entry::new(notification.clone(), fanout.clone(), deadline, false)
            .with_ticket(Some(ticket.clone()));
        lane.push(entry);
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
    busy: Busy,
    /// Its record in the outbox, if the store keeps one and wrote it.
    ticket: Option<Arc<str>>,
}

async fn settle_job(
    job: Job,
    store: &dyn AlertStore,
    config: &DeliveryConfig,
    log: &Mutex<FailureLog>,
    persist: Option<Persist<'_>>,
) -> Settled {
    let key = job.notification.key.clone();
    let notification = settle(job.notification, job.op, store, config, log).await;
    // Kept before any sink sees it, so that nothing a sink may have
    // delivered is missing from the outbox (its acknowledgement would
    // find no record, and a restart would send it again).
    let mut ticket = None;
    if let (Some(n), Some(p)) = (&notification, persist) {
        match p.outbox.put(n, p.sinks.to_vec(), p.until).await {
            Ok(id) => ticket = Some(id),
            Err(e) => log.lock().unwrap_or_else(PoisonError::into_inner).warn(
                "store",
                &format!("{e}; delivering from memory only"),
                1,
            ),
        }
    }
    Settled {
        notification,
        key,
        op: job.op,
        done: job.done,
        busy: job.busy,
        ticket,
    }
}

/// Hands a settled job to every sink's lane.
fn dispatch(
    job: Settled,
    lanes: &[Arc<Lane>],
    queue: &Arc<Queue>,
    counters: &Counters,
    clock: &Clock,
    config: &DeliveryConfig,
) {
    let Settled {
        notification,
        op,
        done,
        busy,
        ticket,
        ..
    } = job;
    let Some(notification) = notification else {
        if matches!(op, StoreOp::Claim { .. }) {
            Counters::add(&counters.suppressed);
        }
        queue.tried();
        queue.finish();
        if let Some(done) = done {
            done.set();
        }
        return;
    };
    if lanes.is_empty() {
        queue.tried();
        queue.finish();
        if let Some(done) = done {
            done.set();
        }
        return;
    }
    // A panic alert (the hook waits for it) goes first in line.
    let urgent = done.is_some();
    let notification = Arc::new(notification);
    let fanout = Arc::new(Fanout::new(lanes.len(), done, queue.clone()));
    let now = clock.now();
    for lane in lanes {
        let age = lane.sink.max_age().unwrap_or(config.max_age);
        let entry = Entry::new(notification.clone(), fanout.clone(), now + age, urgent)
            .with_ticket(ticket.clone());
        if !lane.push(entry) {
            Counters::add(&counters.suppressed);
        }
    }
    // The lanes hold the clock's steps now.
    drop(busy);
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
            1,
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
