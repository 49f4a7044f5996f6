//! Capturing what the code under test logs, to assert on it: that a slow
//! request is logged, that a secret never is.
//!
//! [`capture_global`] installs one global TRACE subscriber for the test
//! binary (the alert delivery thread and the monitor thread log on their
//! own threads, which a scoped subscriber would miss); [`captured`]
//! returns everything logged so far. [`scoped`] captures one closure's
//! logs on the current thread.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

/// A shared buffer that `tracing_subscriber::fmt` writes into.
#[derive(Clone, Debug, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn subscriber(buffer: &Buffer) -> impl tracing::Subscriber + Send + Sync {
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
}

/// Installs, once per test binary, a global subscriber that records every
/// event at every level from every thread. Call it before the code under
/// test runs.
///
/// # Panics
///
/// If another global subscriber was installed first.
pub fn capture_global() {
    global();
}

fn global() -> &'static Buffer {
    static GLOBAL: OnceLock<Buffer> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let buffer = Buffer::default();
        tracing::subscriber::set_global_default(subscriber(&buffer)).unwrap();
        buffer
    })
}

/// Everything logged through the global subscriber so far (installing it
/// if needed).
pub fn captured() -> String {
    global().text()
}

/// Runs `f` with a subscriber recording this thread's events, and returns
/// what it logged.
pub fn scoped(f: impl FnOnce()) -> String {
    let buffer = Buffer::default();
    tracing::subscriber::with_default(subscriber(&buffer), f);
    buffer.text()
}
