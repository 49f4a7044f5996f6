//! One sink's delivery lane: its queue, its health, retries by age, pacing,
//! and the accounting of every alert it gives up.
//!
//! The rules, in the order they apply:
//!
//! - A lane delivers its queue in order, one notification at a time, paced
//!   by the sink's [`Pacing`]. A panic alert goes first in line.
//! - A retryable failure (a refused connection, a timeout, a 5xx, a 429)
//!   marks the *sink* down, not the alert: the failed notification stays
//!   first in line and the sink is probed again with it after a capped,
//!   jittered backoff (or the `retry_after` a 429 asked for). Everything
//!   queued behind waits for the sink, not for one alert's retries, and a
//!   sink that is down sees one request per backoff, not one per alert.
//!   When the probe succeeds, the rest goes out in order at the sink's pace.
//! - A notification still undelivered at its max age (10 minutes by
//!   default) is given up. So is one the sink refused (400), every one a
//!   disabled sink gets, and the oldest when the lane is full.
//! - Every give-up is counted per sink and reason, logged, reported on the
//!   other sinks, and summarized in one message on this sink once it
//!   delivers again. A resolved message whose firing message was given up
//!   is not sent on its own: it is folded into that summary.
//! - While the sink is backed up, a new alert with the key of one still
//!   waiting is folded into it ("+N similar"), so a long outage does not
//!   end in a burst of hundreds of messages.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use tokio::sync::Notify;

use super::model::Alert;
use super::notification::{format_duration, Notification, NotificationKind};
use super::outbox::Outbox;
use super::sink::{Pacing, Sink, SinkError, SinkErrorKind};
use super::worker::{DeliveryConfig, Done, Queue, LOG_TARGET};
use crate::clock::{Busy, Clock};

/// Why a sink gave an alert up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// Still failing (refused, timing out, 5xx, 429) at its max age.
    MaxAge,
    /// The sink refused this message (a 400, a sink that panicked); not
    /// retried.
    Rejected,
    /// The sink is disabled: its configuration is wrong (401, 404).
    Disabled,
    /// The sink's queue was full: the oldest alert made room.
    QueueFull,
    /// Its attempts were used up ([`max_attempts`](super::AlerterBuilder::max_attempts)).
    Attempts,
    /// The alerter stopped (the process is exiting) before it could be
    /// delivered.
    Shutdown,
}

impl GiveUpReason {
    const ALL: [Self; 6] = [
        Self::MaxAge,
        Self::Rejected,
        Self::Disabled,
        Self::QueueFull,
        Self::Attempts,
        Self::Shutdown,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// A few words for logs and messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::MaxAge => "still failing at its max age",
            Self::Rejected => "refused by the sink, not retried",
            Self::Disabled => "sink disabled",
            Self::QueueFull => "queue full",
            Self::Attempts => "attempts used up",
            Self::Shutdown => "still queued at shutdown",
        }
    }
}

/// How many alerts a sink gave up, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GiveUps {
    /// Still failing at their max age.
    pub max_age: u64,
    /// Refused by the sink.
    pub rejected: u64,
    /// Given to a disabled sink.
    pub disabled: u64,
    /// Dropped from a full queue.
    pub queue_full: u64,
    /// Attempts used up.
    pub attempts: u64,
    /// Still queued when the alerter stopped.
    pub shutdown: u64,
}

impl GiveUps {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.max_age
            + self.rejected
            + self.disabled
            + self.queue_full
            + self.attempts
            + self.shutdown
    }

    /// The count for one reason.
    pub fn get(&self, reason: GiveUpReason) -> u64 {
        match reason {
            GiveUpReason::MaxAge => self.max_age,
            GiveUpReason::Rejected => self.rejected,
            GiveUpReason::Disabled => self.disabled,
            GiveUpReason::QueueFull => self.queue_full,
            GiveUpReason::Attempts => self.attempts,
            GiveUpReason::Shutdown => self.shutdown,
        }
    }
}

/// One sink's counters, from [`Alerter::sink_stats`](super::Alerter::sink_stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkStats {
    /// The sink's name.
    pub name: String,
    /// `false` once the sink disabled itself (a wrong token).
    pub enabled: bool,
    /// `true` while the sink is failing and being probed.
    pub down: bool,
    /// Notifications delivered.
    pub sent: u64,
    /// Notifications waiting for this sink now.
    pub queued: u64,
    /// Alerts given up, by reason.
    pub given_up: GiveUps,
}

/// The live counters of one sink.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    pub(crate) disabled: AtomicBool,
    pub(crate) down: AtomicBool,
    pub(crate) sent: AtomicU64,
    pub(crate) queued: AtomicU64,
    given_up: [AtomicU64; GiveUpReason::ALL.len()],
}

impl SinkCounters {
    pub(crate) fn snapshot(&self, name: &str) -> SinkStats {
        let g = |r: GiveUpReason| self.given_up[r.index()].load(Ordering::Relaxed);
        SinkStats {
            name: name.to_owned(),
            enabled: !self.disabled.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            given_up: GiveUps {
                max_age: g(GiveUpReason::MaxAge),
                rejected: g(GiveUpReason::Rejected),
                disabled: g(GiveUpReason::Disabled),
                queue_full: g(GiveUpReason::QueueFull),
                attempts: g(GiveUpReason::Attempts),
                shutdown: g(GiveUpReason::Shutdown),
            },
        }
    }
}

/// A job handed to several lanes: finished when the last lane is done
/// with it, and "tried" (what the panic hook waits for) once every lane
/// made its first attempt.
#[derive(Debug)]
pub(crate) struct Fanout {
    remaining: AtomicUsize,
    untried: AtomicUsize,
    done: Option<Arc<Done>>,
    queue: Arc<Queue>,
}

impl Fanout {
    pub(crate) fn new(lanes: usize, done: Option<Arc<Done>>, queue: Arc<Queue>) -> Self {
        Self {
            remaining: AtomicUsize::new(lanes),
            untried: AtomicUsize::new(lanes),
            done,
            queue,
        }
    }

    fn tried(&self) {
        if self.untried.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.tried();
            if let Some(done) = &self.done {
                done.set();
            }
        }
    }

    fn finished(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.finish();
        }
    }
}

/// A notification waiting in one lane.
#[derive(Debug)]
pub(crate) struct Entry {
    notification: Arc<Notification>,
    /// Alerts with the same key folded into this one while it waited.
    folded: u64,
    fanout: Option<Arc<Fanout>>,
    /// One of the lane's own messages (a summary, another sink's
    /// give-ups), never reported as lost in turn.
    own: bool,
    /// Its record in the store's outbox, acknowledged when the lane is
    /// done with it.
    ticket: Option<Arc<str>>,
    /// The summary of what the sink lost, written when it is sent.
    summary: bool,
    deadline: Instant,
    attempts: u32,
    tried: bool,
    urgent: bool,
}

impl Entry {
    pub(crate) fn new(
        notification: Arc<Notification>,
        fanout: Arc<Fanout>,
        deadline: Instant,
        urgent: bool,
    ) -> Self {
        Self {
            notification,
            folded: 0,
            fanout: Some(fanout),
            own: false,
            ticket: None,
            summary: false,
            deadline,
            attempts: 0,
            tried: false,
            urgent,
        }
    }

    /// One of `lane`'s own messages; a flush waits for it like for any
    /// alert.
    fn own(lane: &Lane, notification: Notification, deadline: Instant) -> Self {
        lane.queue.add_pending();
        Self {
            notification: Arc::new(notification),
            folded: 0,
            fanout: Some(Arc::new(Fanout::new(1, None, lane.queue.clone()))),
            own: true,
            ticket: None,
            summary: false,
            deadline,
            attempts: 0,
            tried: false,
            urgent: false,
        }
    }

    /// Keeps it in the store's outbox under `id` until the lane is done.
    pub(crate) fn with_ticket(mut self, id: Option<Arc<str>>) -> Self {
        self.ticket = id;
        self
    }

    fn mark_tried(&mut self) {
        if !self.tried {
            self.tried = true;
            if let Some(f) = &self.fanout {
                f.tried();
            }
        }
    }

    fn finish(mut self) {
        self.mark_tried();
        if let Some(f) = &self.fanout {
            f.finished();
        }
    }

    fn foldable(&self) -> bool {
        self.notification.kind == NotificationKind::Alert && !self.urgent && !self.summary
    }

    /// What goes to the sink: the notification, with what was folded in.
    fn rendered(&self) -> Arc<Notification> {
        if self.folded == 0 {
            return self.notification.clone();
        }
        let mut n = (*self.notification).clone();
        n.similar = n.similar.saturating_add(self.folded);
        Arc::new(n)
    }
}

/// One sink's queue and the state shared with its driver.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) sink: Arc<dyn Sink>,
    state: Mutex<LaneState>,
    wake: Notify,
    capacity: usize,
    clock: Clock,
    counters: Arc<SinkCounters>,
    queue: Arc<Queue>,
    outbox: Option<Arc<Outbox>>,
}

#[derive(Debug, Default)]
struct LaneState {
    /// Outbox records to acknowledge for this sink.
    acks: Vec<Arc<str>>,
    entries: VecDeque<Entry>,
    /// Dropped from a full queue, to be accounted by the driver.
    overflow: Vec<Entry>,
    closed: bool,
    /// Pushes so far: whether work came in since the driver decided to
    /// wait.
    pushes: u64,
    /// Held while the driver has work it can do now, so that a
    /// [`ManualClock`](crate::ManualClock) step waits for it.
    running: Option<Busy>,
}

impl Lane {
    pub(crate) fn new(
        sink: Arc<dyn Sink>,
        capacity: usize,
        clock: Clock,
        counters: Arc<SinkCounters>,
        queue: Arc<Queue>,
        outbox: Option<Arc<Outbox>>,
    ) -> Self {
        Self {
            sink,
            state: Mutex::default(),
            wake: Notify::new(),
            capacity: capacity.max(1),
            clock,
            counters,
            queue,
            outbox,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `entry`: an urgent one first in line, an alert whose key is
    /// already waiting folded into it. `false` if it was folded (and so is
    /// finished here).
    pub(crate) fn push(&self, mut entry: Entry) -> bool {
        let mut st = self.lock();
        if entry.foldable() {
            let key = &entry.notification.key;
            if let Some(same) = st
                .entries
                .iter_mut()
                .rev()
                .find(|e| e.foldable() && e.notification.key == *key)
            {
                same.folded = same
                    .folded
                    .saturating_add(1 + entry.notification.similar + entry.folded);
                if let Some(id) = entry.ticket.take() {
                    st.acks.push(id);
                }
                drop(st);
                entry.finish();
                return false;
            }
        }
        if st.entries.len() >= self.capacity {
            if let Some(i) = st.entries.iter().position(|e| !e.urgent) {
                if let Some(old) = st.entries.remove(i) {
                    st.overflow.push(old);
                }
            }
        }
        // Behind a sink that is down it waits for the sink, as what was
        // queued before it does (see `settle_waiting`).
        let settled = (!entry.urgent && self.counters.down.load(Ordering::Relaxed))
            .then(|| {
                entry.tried = true;
                entry.fanout.clone()
            })
            .flatten();
        if entry.urgent {
            let at = st.entries.iter().take_while(|e| e.urgent).count();
            st.entries.insert(at, entry);
        } else {
            st.entries.push_back(entry);
        }
        self.counters
            .queued
            .store(st.entries.len() as u64, Ordering::Relaxed);
        st.pushes += 1;
        if st.running.is_none() {
            st.running = Some(self.clock.busy());
        }
        drop(st);
        if let Some(fanout) = settled {
            fanout.tried();
        }
        self.wake.notify_waiters();
        true
    }

    /// The sink failed: what waits in line behind the failure counts as
    /// tried for a flush during a panic (it waits for the sink to come
    /// back, not for a first attempt of its own). Urgent entries are
    /// attempted at once whatever the sink's state, and keep their own
    /// first attempt.
    fn settle_waiting(&self) {
        let settled: Vec<Arc<Fanout>> = {
            let mut st = self.lock();
            st.entries
                .iter_mut()
                .filter(|e| !e.urgent && !e.tried)
                .filter_map(|e| {
                    e.tried = true;
                    e.fanout.clone()
                })
                .collect()
        };
        // Outside the lane's lock: the queue's is taken.
        for fanout in settled {
            fanout.tried();
        }
    }

    /// Puts back a notification that failed: first in line again, after
    /// the urgent ones that arrived meanwhile.
    fn put_back(&self, entry: Entry) {
        let mut st = self.lock();
        let at = if entry.urgent {
            0
        } else {
            st.entries.iter().take_while(|e| e.urgent).count()
        };
        st.entries.insert(at, entry);
        st.pushes += 1;
        self.counters
            .queued
            .store(st.entries.len() as u64, Ordering::Relaxed);
    }

    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.pushes += 1;
        if st.running.is_none() {
            st.running = Some(self.clock.busy());
        }
        drop(st);
        self.wake.notify_waiters();
    }

    /// What the driver does next, and the give-ups it must account.
    fn next(&self, now: Instant, ready_at: Instant, disabled: bool, out: &mut Vec<Lost>) -> Next {
        let mut st = self.lock();
        for e in st.overflow.drain(..) {
            out.push(Lost::new(e, GiveUpReason::QueueFull));
        }
        if disabled {
            out.extend(
                st.entries
                    .drain(..)
                    .map(|e| Lost::new(e, GiveUpReason::Disabled)),
            );
        }
        let mut i = 0;
        while i < st.entries.len() {
            if st.entries[i].deadline <= now {
                if let Some(e) = st.entries.remove(i) {
                    out.push(Lost::new(e, GiveUpReason::MaxAge));
                }
            } else {
                i += 1;
            }
        }
        let next = match st.entries.front() {
            None if st.closed => Next::Stop,
            None => Next::Wait(None, st.pushes),
            Some(front) => {
                let at = if front.urgent && !front.tried {
                    now
                } else {
                    ready_at
                };
                if at <= now {
                    match st.entries.pop_front() {
                        Some(entry) => Next::Deliver(entry),
                        None => Next::Wait(None, st.pushes),
                    }
                } else if st.closed {
                    out.extend(
                        st.entries
                            .drain(..)
                            .map(|e| Lost::new(e, GiveUpReason::Shutdown)),
                    );
                    Next::Stop
                } else {
                    let first_deadline = st.entries.iter().map(|e| e.deadline).min();
                    Next::Wait(Some(first_deadline.map_or(at, |d| d.min(at))), st.pushes)
                }
            }
        };
        self.counters
            .queued
            .store(st.entries.len() as u64, Ordering::Relaxed);
        next
    }

    /// Lets a manual clock step on while the driver waits (for new work,
    /// whose pusher takes the token again, or for a registered timer,
    /// whose step counts the wake-up), unless work came in since `seen`;
    /// `false` then (look again).
    fn park(&self, seen: u64) -> bool {
        let mut st = self.lock();
        let idle = st.pushes == seen && !st.closed;
        if idle {
            st.running = None;
        }
        idle
    }

    /// The lane is done with `entry` (delivered, folded or given up for
    /// good): its outbox record is acknowledged for this sink, unless
    /// `keep` (still queued at shutdown: the next process delivers it).
    fn retire(&self, mut entry: Entry, keep: bool) {
        if let Some(id) = entry.ticket.take().filter(|_| !keep) {
            self.lock().acks.push(id);
        }
        entry.finish();
    }

    /// Acknowledges what the lane is done with, in the store's outbox.
    async fn acknowledge(&self, log: &mut FailureLog) {
        let Some(outbox) = &self.outbox else { return };
        let acks = std::mem::take(&mut self.lock().acks);
        for id in acks {
            if let Err(e) = outbox.ack(&id, self.sink.name()).await {
                log.warn(self.sink.name(), &e, 1);
            }
        }
    }

    /// Takes the queued entries `which` selects, in order.
    fn take_where(&self, which: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        let mut st = self.lock();
        let (taken, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut st.entries)
            .into_iter()
            .partition(|e| which(e));
        st.entries = kept.into();
        taken
    }

    /// Keeps `busy` as the lane's running token (from a timer's wake-up).
    fn hold(&self, busy: Busy) {
        let mut st = self.lock();
        if st.running.is_none() {
            st.running = Some(busy);
        }
    }
}

enum Next {
    Deliver(Entry),
    /// Nothing to do before this time (or new work), with the lane's
    /// push count when that was decided.
    Wait(Option<Instant>, u64),
    Stop,
}

/// An alert given up, on its way to the books.
#[derive(Debug)]
struct Lost {
    entry: Entry,
    reason: GiveUpReason,
}

impl Lost {
    fn new(entry: Entry, reason: GiveUpReason) -> Self {
        Self { entry, reason }
    }
}

/// Whether the sink is taking deliveries.
#[derive(Debug)]
enum Health {
    Up,
    /// Failing since `since`: probed again at `retry_at`.
    Down {
        since: SystemTime,
        failures: u32,
        retry_at: Instant,
    },
    /// Asked to wait (a 429) until `until`.
    Paused {
        until: Instant,
    },
}

impl Health {
    fn ready_at(&self, now: Instant) -> Instant {
        match *self {
            Self::Up => now,
            Self::Down { retry_at, .. } => retry_at,
            Self::Paused { until } => until,
        }
    }
}

/// What was lost since the sink last delivered, for the summary it gets
/// once it delivers again.
#[derive(Debug, Default)]
struct LostSince {
    count: u64,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
    lines: Vec<String>,
    /// Incidents whose firing message was lost, with their line in the
    /// summary not sent yet: their resolution is never sent alone.
    firing: HashMap<String, Option<usize>>,
    /// A lost notification, for the service the summary names.
    like: Option<Arc<Notification>>,
    /// Whether the sink gets a summary: it lost alerts by being down or
    /// backed up (not by refusing them, which a summary would not fix).
    needs_summary: bool,
}

/// At most this many titles in a summary; the rest are counted.
const SUMMARY_LINES: usize = 10;

impl LostSince {
    fn add(&mut self, n: &Arc<Notification>, reason: GiveUpReason) {
        self.like.get_or_insert_with(|| n.clone());
        // The sink was down or swamped, not refusing: it is told once it
        // takes messages again.
        if matches!(reason, GiveUpReason::MaxAge | GiveUpReason::QueueFull) {
            self.needs_summary = true;
        }
        self.count += 1;
        self.first = Some(self.first.map_or(n.time, |t| t.min(n.time)));
        self.last = Some(self.last.map_or(n.time, |t| t.max(n.time)));
        let line = (self.lines.len() < SUMMARY_LINES).then_some(self.lines.len());
        if n.kind == NotificationKind::Firing {
            self.firing.insert(n.key.clone(), line);
        }
        if line.is_some() {
            self.lines
                .push(format!("{} ({})", n.headline(), reason.describe()));
        }
    }

    /// Folds a resolution into the lost firing message it belongs to;
    /// `true` if there was one (then it is not sent alone).
    fn fold_resolution(&mut self, n: &Notification) -> bool {
        let NotificationKind::Resolved { duration } = n.kind else {
            return false;
        };
        let Some(i) = self.firing.remove(&n.key) else {
            return false;
        };
        if let Some(line) = i.and_then(|i| self.lines.get_mut(i)) {
            line.push_str(&format!(", resolved after {}", format_duration(duration)));
        }
        true
    }

    /// The summary message of what was lost so far, at `at`.
    fn summary(&self, sink: &str, at: SystemTime) -> Option<Notification> {
        let like = self.like.as_ref().filter(|_| self.count > 0)?;
        let span = match (self.first, self.last) {
            (Some(a), Some(b)) if clock_minute(a) != clock_minute(b) => {
                format!("between {} and {} UTC", clock_minute(a), clock_minute(b))
            }
            (Some(a), _) => format!("at {} UTC", clock_minute(a)),
            _ => String::new(),
        };
        let plural = if self.count == 1 { "alert" } else { "alerts" };
        let mut detail = self.lines.join("\n");
        let more = self.count.saturating_sub(self.lines.len() as u64);
        if more > 0 {
            detail.push_str(&format!("\n… and {more} more"));
        }
        let alert = Alert::warning(format!(
            "{} {plural} could not be delivered to {sink} {span}",
            self.count
        ))
        .detail(detail)
        .key(format!("watchpost:undelivered:{sink}"));
        Some(own_notification(alert, like, at))
    }

    /// The summary was delivered: start afresh. The lost incidents stay
    /// known (their resolutions are still not sent alone).
    fn sent(&mut self) {
        let firing = std::mem::take(&mut self.firing)
            .into_keys()
            .map(|k| (k, None))
            .collect();
        *self = Self {
            firing,
            ..Self::default()
        };
    }
}

/// `HH:MM` of a time, in UTC.
fn clock_minute(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}", day / 3600, day % 3600 / 60)
}

/// A message of watchpost's own at `time`, in the service of `like`.
fn own_notification(alert: Alert, like: &Notification, time: SystemTime) -> Notification {
    let mut n = Notification::new(alert, like.service.clone());
    n.time = time;
    n.window = like.window;
    n
}

/// Drives one lane until it is closed and empty.
pub(crate) async fn drive(
    index: usize,
    lanes: Arc<[Arc<Lane>]>,
    config: DeliveryConfig,
    totals: Arc<super::worker::Counters>,
) {
    let Some(lane) = lanes.get(index).cloned() else {
        return;
    };
    let clock = lane.clock.clone();
    Driver {
        name: lane.sink.name().to_owned(),
        pacer: Pacer::new(lane.sink.pacing()),
        logs: Logs::new(clock.clone()),
        health: Health::Up,
        jitter: Jitter::new(),
        lost: LostSince::default(),
        summary_queued: false,
        disabled: false,
        disabled_reported: false,
        given_up: Vec::new(),
        lane,
        lanes,
        config,
        totals,
        clock,
    }
    .run()
    .await;
}

/// A lane's delivery loop and what it keeps between deliveries.
struct Driver {
    lane: Arc<Lane>,
    lanes: Arc<[Arc<Lane>]>,
    config: DeliveryConfig,
    totals: Arc<super::worker::Counters>,
    clock: Clock,
    name: String,
    health: Health,
    pacer: Pacer,
    logs: Logs,
    jitter: Jitter,
    lost: LostSince,
    /// Whether the summary of what was lost waits in the lane.
    summary_queued: bool,
    disabled: bool,
    /// Whether the other sinks were told this one is disabled.
    disabled_reported: bool,
    /// Give-ups not accounted yet.
    given_up: Vec<Lost>,
}

impl Driver {
    async fn run(mut self) {
        let lane = self.lane.clone();
        loop {
            // Listening before looking: a push after `next` wakes this
            // wait, and no wake-up is left over from earlier (the lane is
            // woken with `notify_waiters`, which stores none), so the
            // driver never runs without its running token.
            let mut notified = pin!(lane.wake.notified());
            notified.as_mut().enable();
            let now = self.clock.now();
            let ready_at = self.health.ready_at(now).max(self.pacer.ready_at(now));
            let next = self
                .lane
                .next(now, ready_at, self.disabled, &mut self.given_up);
            self.account();
            lane.acknowledge(&mut self.logs.store).await;
            match next {
                Next::Stop => break,
                Next::Wait(None, seen) => {
                    self.logs.flush(&self.name);
                    // Work came in meanwhile (a summary put in line while
                    // accounting): look again.
                    if self.lane.park(seen) {
                        notified.await;
                    }
                }
                Next::Wait(Some(at), seen) => {
                    let mut sleep = pin!(self.clock.sleep_until(at));
                    // The timer is registered before the lane lets a
                    // manual clock step on: the step then wakes it.
                    let due = std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(sleep.as_mut().poll(cx).is_ready())
                    })
                    .await;
                    if !due {
                        if !self.lane.park(seen) {
                            continue;
                        }
                        tokio::select! {
                            () = &mut sleep => {}
                            () = notified => continue,
                        }
                    }
                    self.lane.hold(sleep.as_mut().take_busy());
                }
                Next::Deliver(entry) => {
                    self.deliver(entry).await;
                    self.account();
                    lane.acknowledge(&mut self.logs.store).await;
                }
            }
        }
        self.logs.flush(&self.name);
    }

    /// One attempt with the first notification in line, and what follows
    /// from its outcome.
    async fn deliver(&mut self, mut entry: Entry) {
        if self.lost.fold_resolution(&entry.notification) {
            self.lane.retire(entry, false);
            return;
        }
        let rendered = if entry.summary {
            match self.render_summary() {
                Some(summary) => summary,
                None => {
                    self.summary_queued = false;
                    self.lane.retire(entry, false);
                    return;
                }
            }
        } else {
            entry.rendered()
        };
        let outcome = attempt(&*self.lane.sink, &rendered, self.config.attempt_timeout).await;
        let now = self.clock.now();
        self.pacer.record(now);
        entry.attempts += 1;
        let error = match outcome {
            Ok(()) => {
                self.delivered(&entry);
                self.lane.retire(entry, false);
                return;
            }
            Err(error) => error,
        };
        let name = &self.name;
        match error.kind() {
            SinkErrorKind::RateLimited { retry_after } => {
                self.health = Health::Paused {
                    until: now + retry_after,
                };
                self.logs.retrying.warn(
                    name,
                    &format!(
                        "alert sink rate-limited, retrying in {}: {error}",
                        format_duration(retry_after)
                    ),
                    1,
                );
                entry.mark_tried();
                self.lane.put_back(entry);
                self.lane.settle_waiting();
            }
            SinkErrorKind::Transient
                if self
                    .config
                    .max_attempts
                    .is_some_and(|m| entry.attempts >= m) =>
            {
                self.given_up.push(Lost::new(entry, GiveUpReason::Attempts));
            }
            SinkErrorKind::Transient => {
                let (since, failures) = match self.health {
                    Health::Down {
                        since, failures, ..
                    } => (since, failures + 1),
                    _ => (self.clock.system_time(), 1),
                };
                let wait = self.jitter.backoff(
                    self.config.backoff_initial,
                    self.config.backoff_max,
                    failures,
                );
                self.health = Health::Down {
                    since,
                    failures,
                    retry_at: now + wait,
                };
                self.lane.counters.down.store(true, Ordering::Relaxed);
                self.logs.retrying.warn(
                    name,
                    &format!(
                        "alert sink failing, probing again in {} ({} queued): {error}",
                        format_duration(wait),
                        self.lane.lock().entries.len() + 1
                    ),
                    1,
                );
                entry.mark_tried();
                self.lane.put_back(entry);
                self.lane.settle_waiting();
            }
            SinkErrorKind::Rejected => {
                self.given_up.push(Lost::new(entry, GiveUpReason::Rejected));
            }
            SinkErrorKind::Disabled => {
                self.disabled = true;
                self.lane.counters.disabled.store(true, Ordering::Relaxed);
                crate::loud::say(&format!(
                    "alert sink {name} is disabled for the life of the process: {error}. \
                     Alerts no longer reach it; fix its configuration and restart."
                ));
                self.given_up.push(Lost::new(entry, GiveUpReason::Disabled));
            }
        }
        self.logs.last_error = Some(error);
    }

    /// The sink took `entry`: it is up, and hears what it lost meanwhile.
    fn delivered(&mut self, entry: &Entry) {
        if let Health::Down { since, .. } = self.health {
            let down_for = self
                .clock
                .system_time()
                .duration_since(since)
                .unwrap_or_default();
            tracing::info!(
                target: LOG_TARGET,
                sink = %self.name,
                "alert sink delivering again after {}",
                format_duration(down_for)
            );
        }
        self.health = Health::Up;
        self.logs.last_error = None;
        let lane = &self.lane;
        lane.counters.down.store(false, Ordering::Relaxed);
        lane.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.totals.sent.fetch_add(1, Ordering::Relaxed);
        if entry.summary {
            self.lost.sent();
            self.summary_queued = false;
        } else if entry.notification.kind == NotificationKind::Firing {
            self.lost.firing.remove(&entry.notification.key);
        }
    }

    /// The summary of what the sink lost, first in line: it probes the
    /// sink while it is down, and is written when it is sent.
    fn queue_summary(&mut self) {
        if self.summary_queued || self.lost.count == 0 || !self.lost.needs_summary {
            return;
        }
        let Some(like) = self.lost.like.clone() else {
            return;
        };
        // Not waited for by a flush: it may probe a dead sink for as long
        // as the process lives, and it is watchpost's own message.
        let entry = Entry {
            notification: like,
            folded: 0,
            fanout: None,
            own: true,
            ticket: None,
            summary: true,
            deadline: self.clock.now() + self.config.max_age,
            attempts: 0,
            tried: true,
            urgent: false,
        };
        self.lane.put_back(entry);
        self.summary_queued = true;
    }

    /// The summary as it stands, with the resolutions of lost firings
    /// still queued folded into it (not sent alone after it).
    fn render_summary(&mut self) -> Option<Arc<Notification>> {
        let lost = &mut self.lost;
        for resolved in self.lane.take_where(|e| {
            lost.firing.contains_key(&e.notification.key)
                && matches!(e.notification.kind, NotificationKind::Resolved { .. })
        }) {
            lost.fold_resolution(&resolved.notification);
            self.lane.retire(resolved, false);
        }
        lost.summary(&self.name, self.clock.system_time())
            .map(Arc::new)
    }

    /// Books the give-ups: counters, one log line per batch, the summary
    /// this sink gets when it delivers again, and a note on every other
    /// sink.
    fn account(&mut self) {
        if self.given_up.is_empty() {
            return;
        }
        let mut titles = Vec::new();
        let mut reasons: Vec<GiveUpReason> = Vec::new();
        let mut like: Option<Arc<Notification>> = None;
        let mut alerts = 0u64;
        let mut finished = Vec::with_capacity(self.given_up.len());
        for Lost { entry, reason } in self.given_up.drain(..) {
            if entry.summary {
                self.summary_queued = false;
                // Still down at its max age: it is put in line again
                // (below). Refused: not until more is lost.
                if reason != GiveUpReason::MaxAge {
                    self.lost.needs_summary = false;
                }
            }
            // watchpost's own messages (summaries, notes about other
            // sinks) are not the application's alerts: not counted.
            if entry.own {
                finished.push((entry, false));
                continue;
            }
            self.lane.counters.given_up[reason.index()].fetch_add(1, Ordering::Relaxed);
            let total = if reason == GiveUpReason::QueueFull {
                &self.totals.dropped
            } else {
                &self.totals.failed
            };
            total.fetch_add(1, Ordering::Relaxed);
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
            alerts += 1;
            if titles.len() < SUMMARY_LINES {
                titles.push(entry.notification.headline());
            }
            if reason != GiveUpReason::Shutdown {
                self.lost.add(&entry.notification, reason);
            }
            like.get_or_insert_with(|| entry.notification.clone());
            finished.push((entry, reason == GiveUpReason::Shutdown));
        }
        // Logged and reported before the entries are finished: whoever
        // waits for them (a flush) sees the books complete.
        if let Some(like) = like {
            self.report(alerts, &titles, &reasons, &like);
        }
        for (entry, keep) in finished {
            self.lane.retire(entry, keep);
        }
        if !self.disabled {
            self.queue_summary();
        }
    }

    /// The log line of a batch of give-ups and the note on the other
    /// sinks.
    fn report(
        &mut self,
        alerts: u64,
        titles: &[String],
        reasons: &[GiveUpReason],
        like: &Notification,
    ) {
        let name = &self.name;
        let why = reasons
            .iter()
            .map(|r| r.describe())
            .collect::<Vec<_>>()
            .join(", ");
        let error = self
            .logs
            .last_error
            .as_ref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        let plural = if alerts == 1 { "alert" } else { "alerts" };
        let line = format!(
            "{alerts} {plural} given up on {name} ({why}{error}): {}",
            titles.join("; ")
        );
        // Every give-up is said, with its titles; only a disabled sink,
        // which gives up everything it gets, is held to a line a minute.
        if reasons == [GiveUpReason::Disabled] {
            self.logs.given_up.warn(name, &line, alerts);
        } else {
            tracing::warn!(target: LOG_TARGET, sink = %name, "{line}");
        }
        // The other sinks hear about it, unless the process is stopping
        // (they are too), or the sink was disabled and they heard so
        // already (it gives up everything it gets from then on).
        if reasons.iter().all(|r| *r == GiveUpReason::Shutdown) {
            return;
        }
        if reasons.contains(&GiveUpReason::Disabled) {
            if self.disabled_reported && reasons == [GiveUpReason::Disabled] {
                return;
            }
            self.disabled_reported = true;
        }
        let (now, at) = (self.clock.now(), self.clock.system_time());
        for other in self.lanes.iter() {
            if Arc::ptr_eq(other, &self.lane) || other.counters.disabled.load(Ordering::Relaxed) {
                continue;
            }
            let alert = Alert::warning(format!(
                "{alerts} {plural} could not be delivered to {name}"
            ))
            .detail(format!("{why}: {}", titles.join("\n")))
            .key(format!("watchpost:undelivered:{name}"));
            other.push(Entry::own(
                other,
                own_notification(alert, like, at),
                now + self.config.max_age,
            ));
        }
    }
}

/// One attempt, its panics and its time bounded.
async fn attempt(
    sink: &dyn Sink,
    notification: &Notification,
    timeout: Duration,
) -> Result<(), SinkError> {
    // `async` so a sink that panics before returning its future is caught.
    let attempt = AssertUnwindSafe(async { sink.deliver(notification).await }).catch_unwind();
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(SinkError::rejected("the sink panicked")),
        Err(_) => Err(SinkError::transient(format!(
            "no answer within {}",
            format_duration(timeout)
        ))),
    }
}

/// A sink's two failure logs, each at most one line a minute: failing
/// attempts, and alerts given up. What a log held back is said when the
/// lane goes idle and when it stops, so no count is ever lost.
#[derive(Debug)]
struct Logs {
    retrying: FailureLog,
    given_up: FailureLog,
    store: FailureLog,
    last_error: Option<SinkError>,
}

impl Logs {
    fn new(clock: Clock) -> Self {
        Self {
            retrying: FailureLog::new(clock.clone(), "failed attempt(s)"),
            given_up: FailureLog::new(clock.clone(), "alert(s) given up"),
            store: FailureLog::new(clock, "outbox failure(s)"),
            last_error: None,
        }
    }

    fn flush(&mut self, sink: &str) {
        self.retrying.flush(sink);
        self.given_up.flush(sink);
        self.store.flush(sink);
    }
}

/// Logs at most one line a minute, counting what it held back and saying
/// it with the next line or at [`flush`](Self::flush).
#[derive(Debug)]
pub(crate) struct FailureLog {
    clock: Clock,
    what: &'static str,
    last: Option<Instant>,
    skipped: u64,
    since: Option<Instant>,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(60);

    pub(crate) fn new(clock: Clock, what: &'static str) -> Self {
        Self {
            clock,
            what,
            last: None,
            skipped: 0,
            since: None,
        }
    }

    /// Logs `message` (about `count` events) unless a line went out less
    /// than a minute ago.
    pub(crate) fn warn(&mut self, sink: &str, message: &str, count: u64) {
        let now = self.clock.now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            self.skipped += count;
            self.since.get_or_insert(now);
            return;
        }
        if self.skipped > 0 {
            tracing::warn!(
                target: LOG_TARGET,
                sink,
                skipped = self.skipped,
                "{message} (+{} more {} not logged before this)",
                self.skipped,
                self.what
            );
        } else {
            tracing::warn!(target: LOG_TARGET, sink, "{message}");
        }
        self.last = Some(now);
        self.skipped = 0;
        self.since = None;
    }

    /// Says what was held back, if anything.
    fn flush(&mut self, sink: &str) {
        if self.skipped == 0 {
            return;
        }
        let ago = self
            .last
            .or(self.since)
            .map(|t| format_duration(self.clock.now().saturating_duration_since(t)))
            .unwrap_or_default();
        tracing::warn!(
            target: LOG_TARGET,
            sink,
            skipped = self.skipped,
            "{sink}: {} more {} in the {ago} since the last line (not logged one by one)",
            self.skipped,
            self.what
        );
        self.skipped = 0;
        self.since = None;
        self.last = Some(self.clock.now());
    }
}

/// A sink's [`Pacing`], on the alerter's clock.
#[derive(Debug)]
struct Pacer {
    pacing: Pacing,
    recent: VecDeque<Instant>,
}

impl Pacer {
    fn new(pacing: Pacing) -> Self {
        Self {
            pacing,
            recent: VecDeque::new(),
        }
    }

    /// When the next delivery may start.
    fn ready_at(&mut self, now: Instant) -> Instant {
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
        at
    }

    /// A delivery started at `at`.
    fn record(&mut self, at: Instant) {
        self.recent.push_back(at);
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

    #[test]
    fn pacing_spaces_deliveries_and_caps_the_minute() {
        let mut p = Pacer::new(Pacing::every(Duration::from_secs(1)).per_minute(20));
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..21 {
            now = p.ready_at(now);
            p.record(now);
        }
        // 20 a second apart, then the 21st waits for the minute.
        assert_eq!(now - t0, Duration::from_secs(60));
    }

    #[test]
    fn clock_minutes_are_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 14 * 3600 + 2 * 60 + 59);
        assert_eq!(clock_minute(t), "14:02");
    }
}
