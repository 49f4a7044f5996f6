//! Misconfigurations that switch protection off are said where they will
//! be seen: as an `ERROR` event when a tracing subscriber is installed,
//! on stderr otherwise (as the log sink does), and once.

use std::sync::atomic::{AtomicBool, Ordering};

/// The target of these events.
pub(crate) const TARGET: &str = "watchpost";

/// Says `message` at once, as an `ERROR` event or on stderr.
pub(crate) fn say(message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::error!(target: TARGET, "{message}");
    } else {
        eprintln!("[watchpost] ERROR {message}");
    }
}

/// A message said at most once.
#[derive(Debug, Default)]
pub(crate) struct Once(AtomicBool);

impl Once {
    /// Says the message `make` builds, the first time only.
    #[cold]
    pub(crate) fn say(&self, make: impl FnOnce() -> String) {
        if !self.0.swap(true, Ordering::Relaxed) {
            say(&make());
        }
    }

    /// Whether it was said.
    pub(crate) fn said(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
