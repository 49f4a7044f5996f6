//! State shared by the replicas of a service: alert dedupe and incidents,
//! and rate-limit counts, through one backend (Redis, with
//! `watchpost_redis::RedisStore`), given to a [`Watchpost`](crate::Watchpost)
//! in one line with [`WatchpostBuilder::shared`](crate::WatchpostBuilder::shared).
//!
//! The handle does the wiring: the backend's alert store goes to the
//! alerter, its rate-limit store to every limiter the handle makes, its
//! connections run on watchpost's thread, and while it is unreachable the
//! handle raises one "Shared state unavailable" incident, resolved when it
//! is back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::alert::AlertStore;
use crate::ratelimit::RateLimitStore;

/// A backend for state shared between replicas: `watchpost_redis::RedisStore`
/// is the one this project ships.
///
/// A backend never fails a caller: while unreachable, its alert store
/// answers from the process's own memory and its rate-limit store decides
/// by its own policy (fail open by default), and it says so once through
/// [`SharedContext::report`].
pub trait SharedState: Send + Sync + 'static {
    /// What it is, for status lines and alerts: `redis 10.0.0.7:6379`.
    /// Never a password.
    fn describe(&self) -> String;

    /// The store behind alert dedupe and incidents.
    fn alert_store(&self) -> Arc<dyn AlertStore>;

    /// The store behind rate-limit counts (the quota comes with each check).
    fn rate_limit_store(&self) -> Arc<dyn RateLimitStore>;

    /// Called once, when the [`Watchpost`](crate::Watchpost) starts: the
    /// backend's connections should run on [`SharedContext::runtime`]
    /// (watchpost's thread), and changes of availability go to
    /// [`SharedContext::report`].
    fn start(&self, context: SharedContext);

    /// Whether the backend answered the last command (`true` before the
    /// first).
    fn is_available(&self) -> bool;
}

/// Whether a [`SharedState`] backend is reachable, as it reports changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Availability {
    /// The backend stopped answering: dedupe is per process, and rate
    /// limits follow the store's policy (fail open or closed).
    Unavailable,
    /// It answers again, after an outage this long.
    Recovered {
        /// How long it was unavailable.
        after: Duration,
    },
}

type Report = Arc<dyn Fn(Availability) + Send + Sync>;

/// What a [`SharedState`] backend is given when the handle starts.
#[derive(Clone)]
pub struct SharedContext {
    runtime: tokio::runtime::Handle,
    report: Report,
}

impl fmt::Debug for SharedContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedContext").finish_non_exhaustive()
    }
}

impl SharedContext {
    pub(crate) fn new(runtime: tokio::runtime::Handle, report: Report) -> Self {
        Self { runtime, report }
    }

    /// The runtime of watchpost's thread: spawn the connection's tasks
    /// here, so they serve every runtime of the application alike
    /// (actix-web runs one per worker thread) and outlive any of them.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Tells the handle the backend became unavailable or recovered: once
    /// per change, not per command. Quick and non-blocking.
    pub fn report(&self, change: Availability) {
        (self.report)(change);
    }
}
