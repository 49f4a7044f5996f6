//! The one time source of watchpost: the system clock, or a manual one that
//! tests move forward. The alerter, the rate limiter, health checks (their
//! caching, timeouts and background runs) and every monitor read it.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use pin_project_lite::pin_project;

/// How often watchers are evaluated: heartbeat deadlines, error-rate
/// windows, gauges, looping alerts, background health checks.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// How long [`ManualClock::advance`] waits, in real time, for the work a
/// step started (a background health run) before taking the next step.
/// Only a hanging check comes near it: everything else settles in
/// microseconds.
const SETTLE_BOUND: Duration = Duration::from_secs(5);

/// Something evaluated once per [`TICK`]. Implementations must be quick and
/// must not block: they run on watchpost's thread, shared by every watcher.
pub(crate) trait Tick: Send + Sync {
    fn tick(&self, now: Instant);
}

/// The time source of everything in watchpost that decides by time.
///
/// [`Clock::system`] (the default) reads the real clocks; watchers on it
/// are evaluated once a second on watchpost's thread (the one
/// [`Watchpost`](crate::Watchpost), or an [`Alerter`](crate::alert::Alerter)
/// built on its own, starts). A [`ManualClock`] stands still until a test
/// moves it, and moving it evaluates the watchers on it on the test's
/// thread, fires the timers that came due and waits for the work that
/// started: windows, hysteresis, heartbeat deadlines, looping alerts, rate
/// limits, health check caching, timeouts and background runs can be
/// tested over hours of virtual time in milliseconds, deterministically.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::{Clock, ManualClock};
///
/// let real = Clock::system();
/// let manual = ManualClock::new();
/// let clock: Clock = manual.clock();
/// let t0 = clock.now();
/// manual.advance(Duration::from_secs(90));
/// assert_eq!(clock.now() - t0, Duration::from_secs(90));
/// # let _ = real;
/// ```
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.manual.is_some() {
            "Clock::Manual"
        } else {
            "Clock::System"
        })
    }
}

impl Clock {
    /// The real clocks (`Instant::now`, `SystemTime::now`, Tokio's timers).
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// The monotonic time now.
    #[inline]
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.now().instant,
        }
    }

    /// The wall-clock time now (for messages and incident durations).
    pub fn system_time(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => m.now().system,
        }
    }

    /// Whether this is a [`ManualClock`].
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// A future that completes once `duration` has passed on this clock.
    ///
    /// On the system clock it is Tokio's `sleep` (so it needs a Tokio
    /// runtime with the time driver, as any `#[tokio::main]` or actix-web
    /// runtime has); on a manual clock it completes when
    /// [`ManualClock::advance`] reaches its deadline.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        let inner = match &self.manual {
            None => SleepInner::System {
                sleep: tokio::time::sleep(duration),
            },
            Some(m) => SleepInner::Manual {
                sleep: ManualSleep {
                    deadline: m.now().instant + duration,
                    manual: m.clone(),
                    id: None,
                    woken: None,
                },
            },
        };
        Sleep { inner }
    }

    /// A future that completes once this clock reads `deadline` or later.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.sleep(deadline.saturating_duration_since(self.now()))
    }

    /// Runs `future` for at most `duration` of this clock's time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use watchpost::Clock;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let clock = Clock::system();
    /// let slow = std::future::pending::<()>();
    /// assert!(clock.timeout(Duration::from_millis(10), slow).await.is_err());
    /// # }
    /// ```
    pub fn timeout<F: Future>(&self, duration: Duration, future: F) -> Timeout<F> {
        Timeout {
            future,
            sleep: self.sleep(duration),
        }
    }

    /// Work started by a tick that [`ManualClock::advance`] waits for
    /// before its next step; nothing on the system clock.
    pub(crate) fn busy(&self) -> Busy {
        Busy(self.manual.as_ref().map(|m| {
            *m.busy_count() += 1;
            m.clone()
        }))
    }

    /// Evaluates `watcher` once per tick until it is dropped: on a manual
    /// clock when it is advanced, on the system clock by `system`, the
    /// ticker of watchpost's thread.
    pub(crate) fn register(&self, system: &Watchers, watcher: Weak<dyn Tick>) {
        match &self.manual {
            None => system.add(watcher),
            Some(m) => m.watchers.add(watcher),
        }
    }
}

/// A clock that stands still until [`advance`](Self::advance) moves it.
///
/// Give [`clock`](Self::clock) to the builders
/// ([`WatchpostBuilder::clock`](crate::WatchpostBuilder::clock),
/// `AlerterBuilder::clock`, ...): `advance` then evaluates everything built
/// on it, one second of virtual time at a time, as watchpost's thread does
/// in real time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::ManualClock;
///
/// let manual = ManualClock::new();
/// let clock = manual.clock();
/// let start = clock.system_time();
/// manual.advance(Duration::from_secs(3600));
/// assert_eq!(clock.system_time().duration_since(start).ok(), Some(Duration::from_secs(3600)));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    clock: Clock,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock set to the real time now, standing still.
    pub fn new() -> Self {
        Self {
            clock: Clock {
                manual: Some(Arc::new(Manual {
                    now: Mutex::new(Now {
                        instant: Instant::now(),
                        system: SystemTime::now(),
                    }),
                    watchers: Watchers::default(),
                    timers: Mutex::default(),
                    busy: Mutex::new(0),
                    idle: Condvar::new(),
                })),
            },
        }
    }

    /// The [`Clock`] to hand to builders.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Moves time forward by `by`, one tick (1 s) at a time. After each
    /// step it completes the [`Clock::sleep`]s and timeouts that came due,
    /// evaluates every watcher on this clock, and waits until the work
    /// they started (a background health run) is done, so what the step
    /// caused has happened when `advance` returns.
    ///
    /// Blocks the calling thread while that work runs (on watchpost's
    /// thread): in an async test, the checks must not need the test's own
    /// runtime to make progress.
    pub fn advance(&self, by: Duration) {
        let Some(m) = &self.clock.manual else {
            return;
        };
        m.settle();
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(TICK);
            left -= step;
            let now = {
                let mut now = m.now();
                now.instant += step;
                now.system += step;
                now.instant
            };
            m.step(now);
        }
    }

    /// Evaluates every watcher on this clock now, without moving time, and
    /// waits for the work they started, as a step of
    /// [`advance`](Self::advance) does.
    pub fn tick(&self) {
        if let Some(m) = &self.clock.manual {
            m.settle();
            let now = m.now().instant;
            m.step(now);
        }
    }
}

struct Manual {
    now: Mutex<Now>,
    watchers: Watchers,
    timers: Mutex<Timers>,
    /// Work started by ticks and not finished yet ([`Busy`]).
    busy: Mutex<usize>,
    idle: Condvar,
}

impl Manual {
    fn now(&self) -> MutexGuard<'_, Now> {
        self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn timers(&self) -> MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn busy_count(&self) -> MutexGuard<'_, usize> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One step at `now` (time already moved): due timers, watchers, then
    /// the work they started. Work from before the step (a run started
    /// when the checks were built) is waited for first.
    fn step(&self, now: Instant) {
        let due: Vec<Waker> = {
            let mut timers = self.timers();
            let (due, pending): (Vec<Timer>, Vec<Timer>) = std::mem::take(&mut timers.list)
                .into_iter()
                .partition(|t| t.deadline <= now);
            timers.list = pending;
            // Counted under the timers' lock, before any sleep can see
            // that it was woken (and release the count).
            *self.busy_count() += due.len();
            timers.woken.extend(due.iter().map(|t| t.id));
            due.into_iter().map(|t| t.waker).collect()
        };
        for waker in due {
            waker.wake();
        }
        self.watchers.tick(now);
        self.settle();
    }

    /// Waits until no [`Busy`] work is left, at most [`SETTLE_BOUND`].
    fn settle(&self) {
        let busy = self.busy_count();
        let (busy, _) = self
            .idle
            .wait_timeout_while(busy, SETTLE_BOUND, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
        if *busy > 0 {
            tracing::warn!(
                target: "watchpost::clock",
                busy = *busy,
                "ManualClock: work started by a tick is still running after {SETTLE_BOUND:?}; \
                 stepping on (a check that hangs until its timeout?)"
            );
        }
    }
}

struct Now {
    instant: Instant,
    system: SystemTime,
}

#[derive(Default)]
struct Timers {
    next_id: u64,
    list: Vec<Timer>,
    /// Timers a step made due whose sleep has not yet seen it: each holds
    /// one [`Busy`] count, so the step waits for the task it woke.
    woken: Vec<u64>,
}

struct Timer {
    id: u64,
    deadline: Instant,
    waker: Waker,
}

/// Work a [`ManualClock`] step waits for; released on drop.
pub(crate) struct Busy(Option<Arc<Manual>>);

impl fmt::Debug for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Busy")
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            let mut busy = m.busy_count();
            *busy = busy.saturating_sub(1);
            if *busy == 0 {
                m.idle.notify_all();
            }
        }
    }
}

pin_project! {
    /// The future of [`Clock::sleep`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Sleep {
        #[pin]
        inner: SleepInner,
    }
}

pin_project! {
    #[project = SleepProj]
    enum SleepInner {
        System { #[pin] sleep: tokio::time::Sleep },
        Manual { sleep: ManualSleep },
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").finish_non_exhaustive()
    }
}

impl Sleep {
    /// Once the sleep completed on a manual clock's step: the step's wait
    /// for the woken task, handed to the caller so that the work the
    /// wake-up starts is waited for too (keep it until that work is done
    /// or parked on a timer again). Nothing on the system clock.
    pub(crate) fn take_busy(self: Pin<&mut Self>) -> Busy {
        match self.project().inner.project() {
            SleepProj::System { .. } => Busy(None),
            SleepProj::Manual { sleep } => sleep.woken.take().unwrap_or(Busy(None)),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().inner.project() {
            SleepProj::System { sleep } => sleep.poll(cx),
            SleepProj::Manual { sleep } => sleep.poll(cx),
        }
    }
}

struct ManualSleep {
    deadline: Instant,
    manual: Arc<Manual>,
    id: Option<u64>,
    /// The step's count for waking this sleep, released on drop.
    woken: Option<Busy>,
}

impl ManualSleep {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // The timers' lock is held while reading the time: a step moves
        // time first and takes this lock after, so a timer registered here
        // is either already due or seen by that step.
        let mut timers = self.manual.timers();
        if self.manual.now().instant >= self.deadline {
            if let Some(id) = self.id.take() {
                timers.list.retain(|t| t.id != id);
                if let Some(i) = timers.woken.iter().position(|&w| w == id) {
                    timers.woken.swap_remove(i);
                    self.woken = Some(Busy(Some(self.manual.clone())));
                }
            }
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        match self
            .id
            .and_then(|id| timers.list.iter_mut().find(|t| t.id == id))
        {
            Some(timer) => timer.waker = waker,
            None => {
                let id = timers.next_id;
                timers.next_id += 1;
                timers.list.push(Timer {
                    id,
                    deadline: self.deadline,
                    waker,
                });
                self.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let mut timers = self.manual.timers();
            timers.list.retain(|t| t.id != id);
            if let Some(i) = timers.woken.iter().position(|&w| w == id) {
                // Woken by a step but dropped before it saw it.
                timers.woken.swap_remove(i);
                drop(Busy(Some(self.manual.clone())));
            }
        }
    }
}

pin_project! {
    /// The future of [`Clock::timeout`]: the future's output, or
    /// [`Elapsed`] if the time ran out first.
    #[must_use = "futures do nothing unless polled"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout").finish_non_exhaustive()
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        this.sleep.poll(cx).map(|()| Err(Elapsed(())))
    }
}

/// The time of a [`Clock::timeout`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Watchers of one clock (a manual clock's, or watchpost's thread's for
/// the system clock). Dropped watchers are forgotten at the next tick.
#[derive(Default)]
pub(crate) struct Watchers {
    list: Mutex<Vec<Weak<dyn Tick>>>,
}

impl fmt::Debug for Watchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchers").finish_non_exhaustive()
    }
}

impl Watchers {
    pub(crate) fn add(&self, watcher: Weak<dyn Tick>) {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(watcher);
    }

    /// Ticks every live watcher, outside the lock (a watcher may register
    /// another one). A watcher that panics is logged and kept: one bad
    /// gauge must not stop the others.
    pub(crate) fn tick(&self, now: Instant) {
        let live: Vec<Arc<dyn Tick>> = {
            let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for watcher in live {
            if std::panic::catch_unwind(AssertUnwindSafe(|| watcher.tick(now))).is_err() {
                tracing::error!(
                    target: "watchpost::monitor",
                    "a watcher panicked while being evaluated; it stays registered"
                );
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counter(AtomicU32);
    impl Tick for Counter {
        fn tick(&self, _: Instant) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn manual_watchers(manual: &ManualClock) -> &Watchers {
        &manual.clock.manual.as_ref().unwrap().watchers
    }

    #[test]
    fn advance_ticks_once_per_second_and_forgets_dropped_watchers() {
        let manual = ManualClock::new();
        let counter = Arc::new(Counter(AtomicU32::new(0)));
        let weak: Weak<dyn Tick> = Arc::downgrade(&counter) as Weak<dyn Tick>;
        manual.clock().register(&Watchers::default(), weak);
        manual.advance(Duration::from_millis(2500));
        assert_eq!(counter.0.load(Ordering::Relaxed), 3);
        drop(counter);
        manual.advance(Duration::from_secs(2));
        assert_eq!(manual_watchers(&manual).len(), 0);
    }

    #[test]
    fn a_panicking_watcher_does_not_stop_the_others() {
        struct Bad;
        impl Tick for Bad {
            fn tick(&self, _: Instant) {
                panic!("bad gauge");
            }
        }
        let manual = ManualClock::new();
        let bad: Arc<dyn Tick> = Arc::new(Bad);
        let counter = Arc::new(Counter(AtomicU32::new(0)));
        let system = Watchers::default();
        manual.clock().register(&system, Arc::downgrade(&bad));
        manual
            .clock()
            .register(&system, Arc::downgrade(&counter) as Weak<dyn Tick>);
        manual.advance(Duration::from_secs(2));
        assert_eq!(counter.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn system_clock_watchers_go_to_the_system_ticker() {
        let system = Watchers::default();
        let counter = Arc::new(Counter(AtomicU32::new(0)));
        Clock::system().register(&system, Arc::downgrade(&counter) as Weak<dyn Tick>);
        system.tick(Instant::now());
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_system_clock_reads_real_time() {
        let clock = Clock::system();
        assert!(!clock.is_manual());
        let before = Instant::now();
        assert!(clock.now() >= before);
    }

    #[test]
    fn manual_sleeps_and_timeouts_complete_when_advanced_past_them() {
        use futures_util::FutureExt;
        let manual = ManualClock::new();
        let clock = manual.clock();
        let mut sleep = Box::pin(clock.sleep(Duration::from_millis(1500)));
        let mut timeout =
            Box::pin(clock.timeout(Duration::from_secs(3), std::future::pending::<()>()));
        assert!((&mut sleep).now_or_never().is_none());
        assert!((&mut timeout).now_or_never().is_none());
        manual.advance(Duration::from_secs(1));
        assert!((&mut sleep).now_or_never().is_none());
        manual.advance(Duration::from_secs(1));
        assert_eq!((&mut sleep).now_or_never(), Some(()));
        assert!((&mut timeout).now_or_never().is_none());
        manual.advance(Duration::from_secs(1));
        assert_eq!((&mut timeout).now_or_never(), Some(Err(Elapsed(()))));
        // A finished or dropped timer leaves nothing behind.
        drop(timeout);
        assert!(clock.manual.as_ref().unwrap().timers().list.is_empty());
        let ready = clock.timeout(Duration::from_secs(1), async { 7 });
        assert_eq!(ready.now_or_never(), Some(Ok(7)));
    }

    #[test]
    fn a_woken_sleep_wakes_its_task() {
        let manual = ManualClock::new();
        let clock = manual.clock();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // The deadline is set now; the task may poll before or after the
        // first step.
        let sleep = clock.sleep(Duration::from_secs(2));
        std::thread::spawn(move || {
            runtime.block_on(async move {
                sleep.await;
                tx.send(()).unwrap();
            });
        });
        manual.advance(Duration::from_secs(1));
        assert!(rx.try_recv().is_err());
        manual.advance(Duration::from_secs(1));
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_step_waits_for_the_work_a_tick_started() {
        struct Spawner {
            clock: Clock,
            done: Arc<AtomicU32>,
        }
        impl Tick for Spawner {
            fn tick(&self, _: Instant) {
                let busy = self.clock.busy();
                let done = self.done.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    done.fetch_add(1, Ordering::SeqCst);
                    drop(busy);
                });
            }
        }
        let manual = ManualClock::new();
        let spawner = Arc::new(Spawner {
            clock: manual.clock(),
            done: Arc::default(),
        });
        manual.clock().register(
            &Watchers::default(),
            Arc::downgrade(&spawner) as Weak<dyn Tick>,
        );
        manual.advance(Duration::from_secs(3));
        assert_eq!(spawner.done.load(Ordering::SeqCst), 3);
    }
}
