//! watchpost's one thread: a current-thread Tokio runtime that delivers
//! alerts, ticks the watchers on the system clock once a second, runs
//! background health checks and holds shared-state connections.
//!
//! It is started by an [`Alerter`](crate::alert::Alerter) (one per
//! [`Watchpost`](crate::Watchpost)) and stops when the alerter's last clone
//! is dropped and what was queued is delivered.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Instant;

use crate::clock::{Watchers, TICK};

/// The name of watchpost's thread.
pub(crate) const THREAD_NAME: &str = "watchpost";
/// The name of the threads of its runtime's blocking pool, which only
/// name resolution of a sink's host name uses, and which exist only while
/// it runs (and 10 s after).
const BLOCKING_NAME: &str = "watchpost-dns";

/// A handle to watchpost's thread.
#[derive(Clone)]
pub(crate) struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    handle: tokio::runtime::Handle,
    thread: ThreadId,
    watchers: Arc<Watchers>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("thread", &self.inner.thread)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the thread, running `main` on its runtime (with the system
    /// ticker alongside) until `main` completes; then the runtime, and
    /// every task left on it, is dropped and the thread ends.
    pub(crate) fn start<F>(main: F) -> std::io::Result<Self>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(BLOCKING_NAME)
            .max_blocking_threads(2)
            .build()?;
        let handle = runtime.handle().clone();
        let watchers = Arc::new(Watchers::default());
        let ticked = watchers.clone();
        let (running, started) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                crate::alert::worker::mark_delivery_thread();
                let _ = running.send(());
                runtime.block_on(async move {
                    let ticker = tokio::spawn(tick(ticked));
                    main.await;
                    ticker.abort();
                });
            })?;
        // Once running, the thread carries its name (the OS gets it from
        // the thread itself): what a look at the process shows is true
        // from the moment the handle exists.
        let _ = started.recv();
        Ok(Self {
            inner: Arc::new(Inner {
                handle,
                thread: thread.thread().id(),
                watchers,
            }),
        })
    }

    /// Runs `future` on watchpost's thread.
    pub(crate) fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.inner.handle.spawn(future));
    }

    /// The runtime's handle, for connections that must live on this thread.
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// The watchers on the system clock, ticked once a second here.
    pub(crate) fn watchers(&self) -> &Watchers {
        &self.inner.watchers
    }

    /// Whether the calling thread is this engine's.
    pub(crate) fn is_current(&self) -> bool {
        std::thread::current().id() == self.inner.thread
    }
}

/// Ticks every watcher once a second. Late (a suspended VM, a busy
/// machine): ticks once for the present rather than catching up.
async fn tick(watchers: Arc<Watchers>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        watchers.tick(Instant::now());
    }
}
