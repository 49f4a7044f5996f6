use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::alert::notification::Notification;
use crate::alert::sink::{DeliverFuture, Sink};

/// Keeps every notification in memory, for tests: assert what was sent
/// without a network. Clones share the same list.
///
/// Available with the `test-util` feature.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::alert::{Alert, Alerter, MemorySink};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = MemorySink::new();
/// let alerter = Alerter::builder().sink(sink.clone()).build()?;
/// for _ in 0..100 {
///     alerter.send(Alert::error("db timeout after 1012 ms"));
/// }
/// alerter.flush(Duration::from_secs(5));
/// assert_eq!(sink.len(), 1);
/// assert_eq!(alerter.stats().suppressed, 99);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    list: Mutex<Vec<Notification>>,
    cv: Condvar,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything delivered so far, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        self.lock().clone()
    }

    /// How many notifications were delivered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was delivered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets everything delivered so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Waits until at least `n` notifications arrived, at most `timeout`;
    /// `true` if they did.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut list = self.lock();
        while list.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            list = self
                .shared
                .cv
                .wait_timeout(list, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Notification>> {
        self.shared
            .list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &str {
        "memory"
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a> {
        self.lock().push(n.clone());
        self.shared.cv.notify_all();
        Box::pin(async { Ok(()) })
    }
}
