//! Time for the monitors and the alerter: the system clock, or a manual one
//! that tests move forward, and the ticks that drive every watcher.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

/// How often watchers are evaluated: heartbeat deadlines, error-rate
/// windows, gauges, looping alerts.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// Something evaluated once per [`TICK`]. Implementations must be quick and
/// must not block: they run on a thread shared by every watcher.
pub(crate) trait Tick: Send + Sync {
    fn tick(&self, now: Instant);
}

/// The time source of the monitors and the [`Alerter`](crate::alert::Alerter).
///
/// [`Clock::system`] (the default) reads the real clocks, and watchers on it
/// are evaluated once a second by a shared background thread
/// (`watchpost-monitor`). A [`ManualClock`] stands still until a test
/// moves it, and moving it evaluates the watchers on it, on the test's
/// thread: windows, hysteresis, heartbeat deadlines and looping alerts can
/// be tested over hours of virtual time in microseconds, deterministically.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::monitor::{Clock, ManualClock};
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
    /// The real clocks (`Instant::now`, `SystemTime::now`).
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// The monotonic time now.
    #[inline]
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.lock().instant,
        }
    }

    /// The wall-clock time now (for messages and incident durations).
    pub fn system_time(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => m.lock().system,
        }
    }

    /// Whether this is a [`ManualClock`].
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Evaluates `watcher` once per tick until it is dropped.
    pub(crate) fn register(&self, watcher: Weak<dyn Tick>) {
        match &self.manual {
            None => system_ticker().add(watcher),
            Some(m) => m.watchers.add(watcher),
        }
    }
}

/// A clock that stands still until [`advance`](Self::advance) moves it.
///
/// Give [`clock`](Self::clock) to the builders (`AlerterBuilder::clock`,
/// `HttpMonitor::builder(..).clock(..)`, `Heartbeat::builder(..)`, ...);
/// `advance` then evaluates everything built on it, one second of virtual
/// time at a time, on the calling thread, as the background thread would
/// in real time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::monitor::ManualClock;
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
                })),
            },
        }
    }

    /// The [`Clock`] to hand to builders.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Moves time forward by `by`, one tick (1 s) at a time, evaluating
    /// every watcher on this clock after each step.
    pub fn advance(&self, by: Duration) {
        let Some(m) = &self.clock.manual else {
            return;
        };
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(TICK);
            left -= step;
            let now = {
                let mut now = m.lock();
                now.instant += step;
                now.system += step;
                now.instant
            };
            m.watchers.tick(now);
        }
    }

    /// Evaluates every watcher on this clock now, without moving time.
    pub fn tick(&self) {
        if let Some(m) = &self.clock.manual {
            m.watchers.tick(m.lock().instant);
        }
    }
}

struct Manual {
    now: Mutex<Now>,
    watchers: Watchers,
}

impl Manual {
    fn lock(&self) -> std::sync::MutexGuard<'_, Now> {
        self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Now {
    instant: Instant,
    system: SystemTime,
}

/// The watchers of one clock. Dropped watchers are forgotten at the next
/// tick.
#[derive(Default)]
struct Watchers {
    list: Mutex<Vec<Weak<dyn Tick>>>,
}

impl Watchers {
    fn add(&self, watcher: Weak<dyn Tick>) {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(watcher);
    }

    /// Ticks every live watcher, outside the lock (a watcher may register
    /// another one). A watcher that panics is logged and kept: one bad
    /// gauge must not stop the others.
    fn tick(&self, now: Instant) {
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
}

/// The thread that ticks every watcher on the system clock, started by the
/// first one registered.
struct SystemTicker {
    watchers: Arc<Watchers>,
}

impl SystemTicker {
    fn add(&self, watcher: Weak<dyn Tick>) {
        self.watchers.add(watcher);
    }
}

fn system_ticker() -> &'static SystemTicker {
    static TICKER: OnceLock<SystemTicker> = OnceLock::new();
    TICKER.get_or_init(|| {
        let watchers = Arc::new(Watchers::default());
        let ticked = watchers.clone();
        let spawned = std::thread::Builder::new()
            .name("watchpost-monitor".into())
            .spawn(move || {
                let mut next = Instant::now() + TICK;
                loop {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep(next - now);
                    }
                    // Late (a suspended VM, an overloaded machine): tick once
                    // for the present rather than catching up.
                    next = next.max(Instant::now()) + TICK;
                    ticked.tick(Instant::now());
                }
            });
        if let Err(error) = spawned {
            tracing::error!(
                target: "watchpost::monitor",
                %error,
                "could not start the watchpost-monitor thread: watchers are evaluated only when used"
            );
        }
        SystemTicker { watchers }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counter(AtomicU32);
    impl Tick for Counter {
        fn tick(&self, _: Instant) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn advance_ticks_once_per_second_and_forgets_dropped_watchers() {
        let manual = ManualClock::new();
        let counter = Arc::new(Counter(AtomicU32::new(0)));
        let weak: Weak<dyn Tick> = Arc::downgrade(&counter) as Weak<dyn Tick>;
        manual.clock().register(weak);
        manual.advance(Duration::from_millis(2500));
        assert_eq!(counter.0.load(Ordering::Relaxed), 3);
        drop(counter);
        manual.advance(Duration::from_secs(2));
        let m = manual
            .clock
            .manual
            .as_ref()
            .map(|m| m.watchers.list.lock().unwrap().len());
        assert_eq!(m, Some(0));
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
        manual.clock().register(Arc::downgrade(&bad));
        manual
            .clock()
            .register(Arc::downgrade(&counter) as Weak<dyn Tick>);
        manual.advance(Duration::from_secs(2));
        assert_eq!(counter.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_system_clock_reads_real_time() {
        let clock = Clock::system();
        assert!(!clock.is_manual());
        let before = Instant::now();
        assert!(clock.now() >= before);
    }
}
