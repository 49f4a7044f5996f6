//! A rolling window of requests in time buckets, written with one or two
//! relaxed atomic adds per request: no lock, no allocation.
//!
//! Each bucket holds a latency histogram (its sum is the request count),
//! the 5xx count and the 5xx count per route slot. A bucket is reused when
//! time comes round to it again: the first request to see a stale epoch
//! clears it (once per bucket length, never per request).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Buckets in one window.
pub(crate) const BUCKETS: u64 = 12;
/// The ring holds one spare bucket so the one being cleared is never one
/// still in the window.
const RING: u64 = BUCKETS + 1;
/// Latency histogram classes: four per power of two of microseconds, from
/// 0 µs to about 4.5 minutes (2^28 µs; the last class is open-ended).
pub(crate) const CLASSES: usize = 108;
/// Distinct routes counted per window; more fall into "other routes".
pub(crate) const ROUTES: usize = 32;

/// An epoch no bucket has: never used.
const NEVER: u64 = 0;
/// The epoch while a bucket is being cleared.
const CLEARING: u64 = u64::MAX;

/// The latency class of `micros`.
#[inline]
pub(crate) fn class_of(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let e = 63 - u64::from(micros.leading_zeros()); // ≥ 2
    let m = (micros >> (e - 2)) & 3;
    ((4 * (e - 1) + m) as usize).min(CLASSES - 1)
}

/// The upper bound of a class (exclusive), the value reported for a
/// percentile that falls in it: latency is over-estimated by at most 25%,
/// never under-estimated.
pub(crate) fn class_upper(class: usize) -> Duration {
    let class = class as u64;
    if class < 4 {
        return Duration::from_micros(class + 1);
    }
    let e = class / 4 + 1;
    let m = class % 4;
    Duration::from_micros((5 + m) << (e - 2))
}

/// A latency histogram: counts per class.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Histogram(pub(crate) [u64; CLASSES]);

impl Default for Histogram {
    fn default() -> Self {
        Self([0; CLASSES])
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram({} samples)", self.count())
    }
}

impl Histogram {
    pub(crate) fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn add(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The `q` quantile (0..=1), as its class's upper bound. `None` when
    /// empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the sample at quantile q, 1-based: p95 of 20
        // samples is the 19th.
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (class, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(class_upper(class));
            }
        }
        Some(class_upper(CLASSES - 1))
    }
}

/// One bucket's worth of requests.
struct Bucket {
    epoch: AtomicU64,
    errors: AtomicU32,
    latency: [AtomicU32; CLASSES],
    route_errors: [AtomicU32; ROUTES + 1],
}

impl Bucket {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(NEVER),
            errors: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
            route_errors: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn clear(&self) {
        self.errors.store(0, Ordering::Relaxed);
        for c in &self.latency {
            c.store(0, Ordering::Relaxed);
        }
        for c in &self.route_errors {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A route seen failing: its name is set once, by the first request that
/// claims the slot.
struct RouteSlot {
    hash: AtomicU64,
    name: OnceLock<Box<str>>,
}

/// The totals of one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) latency: Histogram,
    /// 5xx per route slot; the last one is "other routes".
    pub(crate) route_errors: Vec<u64>,
}

/// The rolling window: `BUCKETS` buckets of `bucket` each. Times are
/// nanoseconds since the monitor's origin.
pub(crate) struct Window {
    bucket_ms: u64,
    bucket_ns: u64,
    ring: Box<[Bucket]>,
    routes: Box<[RouteSlot]>,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("bucket", &Duration::from_millis(self.bucket_ms))
            .finish_non_exhaustive()
    }
}

impl Window {
    /// A window of `length`, in `BUCKETS` buckets (at least 1 ms each).
    pub(crate) fn new(length: Duration) -> Self {
        let bucket_ms = u64::try_from((length.as_millis() / u128::from(BUCKETS)).max(1))
            .unwrap_or(u64::MAX / 1_000_000);
        Self {
            bucket_ms,
            bucket_ns: bucket_ms.saturating_mul(1_000_000),
            ring: (0..RING).map(|_| Bucket::new()).collect(),
            routes: (0..ROUTES)
                .map(|_| RouteSlot {
                    hash: AtomicU64::new(0),
                    name: OnceLock::new(),
                })
                .collect(),
        }
    }

    /// The length of one bucket.
    pub(crate) fn bucket(&self) -> Duration {
        Duration::from_millis(self.bucket_ms)
    }

    /// The length of the window.
    pub(crate) fn length(&self) -> Duration {
        self.bucket() * BUCKETS as u32
    }

    /// The bucket sequence number of a time, in nanoseconds since the
    /// origin; from 1.
    #[inline]
    pub(crate) fn seq(&self, nanos: u64) -> u64 {
        nanos / self.bucket_ns + 1
    }

    /// The bucket for `seq`, cleared first if it last held an older one.
    #[inline]
    fn bucket_for(&self, seq: u64) -> &Bucket {
        let bucket = &self.ring[(seq % RING) as usize];
        let epoch = bucket.epoch.load(Ordering::Acquire);
        if epoch != seq {
            self.rotate(bucket, epoch, seq);
        }
        bucket
    }

    #[cold]
    fn rotate(&self, bucket: &Bucket, mut epoch: u64, seq: u64) {
        // A few hundred spins at most: clearing is ~100 relaxed stores.
        for _ in 0..10_000 {
            if epoch == seq || (epoch > seq && epoch != CLEARING) {
                // Current, or a thread with a later clock reading got here
                // first: count into it (off by one bucket at worst).
                return;
            }
            if epoch != CLEARING {
                match bucket.epoch.compare_exchange(
                    epoch,
                    CLEARING,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        bucket.clear();
                        bucket.epoch.store(seq, Ordering::Release);
                        return;
                    }
                    Err(now) => epoch = now,
                }
            } else {
                std::hint::spin_loop();
                epoch = bucket.epoch.load(Ordering::Acquire);
            }
        }
    }

    /// Counts one request that took `latency`, at bucket `seq`.
    #[inline]
    pub(crate) fn record(&self, seq: u64, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.bucket_for(seq).latency[class_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one 5xx at bucket `seq` for `method` and `route` (`None`: no
    /// route known, counted with "other routes").
    pub(crate) fn record_error(&self, seq: u64, method: &str, route: Option<&str>) {
        let bucket = self.bucket_for(seq);
        bucket.errors.fetch_add(1, Ordering::Relaxed);
        let slot = route.map_or(ROUTES, |r| self.route_slot(method, r));
        bucket.route_errors[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The slot of `method route`, claimed on first sight; `ROUTES`
    /// ("other") when every slot is taken. Routes are patterns
    /// (`/users/{id}`), so a service has a bounded number of them; the
    /// name is allocated once, when the slot is claimed.
    fn route_slot(&self, method: &str, route: &str) -> usize {
        // FNV-1a over "METHOD route"; 0 marks a free slot.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in method.bytes().chain([b' ']).chain(route.bytes()) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let hash = hash.max(1);
        let start = (hash % ROUTES as u64) as usize;
        for i in 0..ROUTES {
            let index = (start + i) % ROUTES;
            let slot = &self.routes[index];
            let mut current = slot.hash.load(Ordering::Acquire);
            if current == 0 {
                current =
                    match slot
                        .hash
                        .compare_exchange(0, hash, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => {
                            let _ = slot.name.set(format!("{method} {route}").into());
                            return index;
                        }
                        Err(now) => now,
                    };
            }
            if current == hash {
                return index;
            }
        }
        ROUTES
    }

    /// The name of route slot `index` (`None` for "other" or a slot whose
    /// name is still being set).
    pub(crate) fn route_name(&self, index: usize) -> Option<&str> {
        self.routes.get(index)?.name.get().map(|s| &**s)
    }

    /// The totals over the buckets `seq - BUCKETS + 1 ..= seq` (the
    /// current one partly filled). Buckets cleared while being read are
    /// skipped.
    pub(crate) fn totals(&self, seq: u64) -> Totals {
        self.totals_of(seq.saturating_sub(BUCKETS - 1).max(1)..=seq)
    }

    /// The totals of the buckets with epochs in `range` (still in the ring).
    pub(crate) fn totals_of(&self, range: std::ops::RangeInclusive<u64>) -> Totals {
        let mut totals = Totals {
            route_errors: vec![0; ROUTES + 1],
            ..Totals::default()
        };
        for bucket in self.ring.iter() {
            let epoch = bucket.epoch.load(Ordering::Acquire);
            if !range.contains(&epoch) {
                continue;
            }
            let mut latency = Histogram::default();
            for (sum, c) in latency.0.iter_mut().zip(bucket.latency.iter()) {
                *sum = u64::from(c.load(Ordering::Relaxed));
            }
            let errors = u64::from(bucket.errors.load(Ordering::Relaxed));
            let routes: Vec<u64> = bucket
                .route_errors
                .iter()
                .map(|c| u64::from(c.load(Ordering::Relaxed)))
                .collect();
            if bucket.epoch.load(Ordering::Acquire) != epoch {
                continue;
            }
            totals.requests += latency.count();
            totals.errors += errors;
            totals.latency.add(&latency);
            for (sum, n) in totals.route_errors.iter_mut().zip(routes) {
                *sum += n;
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classes_are_contiguous_and_bounded() {
        let mut last = 0;
        for us in 0..200_000u64 {
            let c = class_of(us);
            assert!(
                c == last || c == last + 1,
                "{us}µs jumps from {last} to {c}"
            );
            last = c;
        }
        assert_eq!(class_of(u64::MAX), CLASSES - 1);
        assert_eq!(class_of((1 << 28) - 1), CLASSES - 1);
        assert!(class_of((1 << 28) - 1) > class_of((1 << 27) - 1));
    }

    proptest! {
        #[test]
        fn a_class_upper_bound_is_above_its_values_within_25_percent(us in 0u64..130_000_000) {
            let upper = class_upper(class_of(us)).as_micros() as u64;
            prop_assert!(upper > us);
            prop_assert!(upper as f64 <= (us as f64 * 1.25).max(us as f64 + 1.0));
        }
    }

    #[test]
    fn p95_of_a_known_distribution() {
        let w = Window::new(Duration::from_secs(60));
        // 95 fast requests at 10 ms, 5 slow at 800 ms: p95 is a fast one,
        // p96 a slow one.
        for _ in 0..95 {
            w.record(1, Duration::from_millis(10));
        }
        for _ in 0..5 {
            w.record(1, Duration::from_millis(800));
        }
        let t = w.totals(1);
        assert_eq!(t.requests, 100);
        let p95 = t.latency.quantile(0.95).unwrap();
        assert!(p95 >= Duration::from_millis(10) && p95 <= Duration::from_micros(12_500));
        let p96 = t.latency.quantile(0.96).unwrap();
        assert!(p96 >= Duration::from_millis(800) && p96 <= Duration::from_millis(1000));
    }

    #[test]
    fn the_window_forgets_buckets_that_left_it() {
        let w = Window::new(Duration::from_secs(60));
        assert_eq!(w.bucket(), Duration::from_secs(5));
        let at = |s: u64| w.seq(s * 1_000_000_000);
        w.record(at(0), Duration::from_millis(1));
        w.record_error(at(0), "GET", Some("/a"));
        w.record(at(30), Duration::from_millis(1));
        assert_eq!(w.totals(at(30)).requests, 2);
        assert_eq!(w.totals(at(59)).requests, 2);
        // At 60 s the first bucket (0..5 s) is out.
        assert_eq!(w.totals(at(60)).requests, 1);
        assert_eq!(w.totals(at(60)).errors, 0);
        // 65 s later the ring has come round to the first bucket's slot:
        // a new request clears it rather than adding to stale counts.
        w.record(at(65), Duration::from_millis(1));
        let t = w.totals(at(65));
        assert_eq!((t.requests, t.errors), (2, 0));
    }

    #[test]
    fn routes_get_slots_until_full_then_other() {
        let w = Window::new(Duration::from_secs(60));
        for i in 0..ROUTES + 5 {
            w.record_error(1, "GET", Some(&format!("/r{i}")));
        }
        w.record_error(1, "GET", Some("/r0"));
        w.record_error(1, "GET", None);
        let t = w.totals(1);
        assert_eq!(t.errors, ROUTES as u64 + 7);
        assert_eq!(t.route_errors[ROUTES], 6);
        let r0 = (0..ROUTES)
            .find(|&i| w.route_name(i) == Some("GET /r0"))
            .unwrap();
        assert_eq!(t.route_errors[r0], 2);
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let w = std::sync::Arc::new(Window::new(Duration::from_secs(60)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        w.record(7, Duration::from_micros(300));
                        w.record_error(7, "POST", Some("/x"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = w.totals(7);
        assert_eq!((t.requests, t.errors), (40_000, 40_000));
    }
}
