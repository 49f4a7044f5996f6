//! The panic hook: every panic becomes a critical alert, delivered before
//! the process dies. And the framework-free pieces the adapters use to turn
//! a panicking request into a 500.
//!
//! - **[`install`]** chains a hook in front of the one already set (the
//!   default one keeps printing `thread 'main' panicked at ...` to stderr).
//!   It captures the message, the location, the thread and a backtrace
//!   trimmed to the frames that matter, and sends a critical
//!   [`Alert`](crate::alert::Alert) keyed by the location, so a panic in a
//!   loop gives one message per dedupe window, not one per iteration. The
//!   [`Alerter`] adds the service's name, version and host. The alert also
//!   carries the panic in structured form ([`PanicReport`]: message,
//!   location, thread, frames), which the Sentry sink sends as an exception
//!   with a stack trace.
//! - **Delivered before the process dies.** The panicking thread waits
//!   until every sink has answered the alert, for a timeout at most
//!   (default 1 s, [`PanicHook::timeout`]): a panic in
//!   `main`, or any panic with `panic = "abort"`, still reaches your phone.
//!   What ends the wait, sink by sink:
//!   - **an answer**: a success is the only proof that the API has the
//!     alert (a request written but not answered is not taken for
//!     delivered); an error status is final for the hook, as below;
//!   - **a failure without an answer** (a refused connection, an unknown
//!     host): final for the hook, which waits out no retry or backoff; the
//!     alert stays queued (and in the store's outbox, when it keeps one)
//!     and is retried as long as the process lives;
//!   - **the timeout**, for a sink that is slow to answer: the alert stays
//!     queued as well. (Sentry's panic integration waits 2 s there.)
//!
//!   A panic in a Tokio task or a thread holds that thread that long at
//!   most, plus the time to build the alert. The previous hook (the
//!   stderr message) runs after that, so one that exits the process can't
//!   lose the alert. In an optimized build the backtrace is resolved only
//!   as far as the alert shows it: a millisecond or two, not the tens of
//!   milliseconds of resolving the C library's frames under `main` (a
//!   build with debug assertions resolves it all, with the standard
//!   library's resolver). Measured holds are in `docs/alerts.md` (the
//!   `panic_hook` bench): about 2 ms with a sink that answers at once or
//!   refuses the connection, the timeout with one that answers late.
//! - **Never makes things worse.** The hook does not panic, takes only
//!   watchpost's own short-lived locks, and sends nothing for a panic on the
//!   alert delivery thread (a panic inside a sink would loop back into the
//!   sink).
//! - **Per request.** Web adapters run each request in a [`CatchScope`]:
//!   a handler's panic is caught ([`CatchUnwind`], [`CatchScope::run`]),
//!   the client gets a 500 with [`PANIC_BODY`], the server keeps serving.
//!   Inside a scope the hook sends without waiting (the process survives,
//!   the worker thread must not be held); without the hook, the adapter
//!   reports the panic itself ([`Panicked::report`]), never twice.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use watchpost::alert::Alerter;
//! use watchpost::panic::PanicHook;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let alerter = Alerter::from_env()?;
//! PanicHook::new(&alerter)
//!     .timeout(Duration::from_secs(5))
//!     .install();
//! # Ok(()) }
//! ```
//!
//! What the alert looks like in plain text (title first, for the lock
//! screen; labels `thread`, `location` and `request` follow):
//!
//! ```text
//! 🔥 panic: called `Option::unwrap()` on a `None` value
//! critical · checkout-api · production · web-1 · v1.4.2
//! at src/orders.rs:88:41
//! thread 'tokio-runtime-worker'
//! request GET /orders/42 (caught: the client got a 500, serving goes on)
//!
//! backtrace:
//!   0: checkout_api::orders::total
//!         at src/orders.rs:88:41
//!   1: checkout_api::orders::show::{{closure}}
//!         at src/orders.rs:31:17
//!      … 12 framework frames
//! ```
//!
//! The backtrace lists the application's own frames; runs of frames from
//! the standard library, tokio, futures, tower, hyper, axum, actix-web and
//! watchpost (and any dependency's source) are folded into one line each,
//! and every path is relative to its crate, never the build machine's.

mod backtrace;
mod catch;
mod hook;
mod report;

use std::any::Any;
use std::time::Duration;

use crate::alert::{worker, Alerter};

pub use self::catch::{CatchScope, CatchUnwind, Panicked};
pub(crate) use self::hook::attach;
pub use self::hook::{install, is_installed, try_install, AlreadyInstalled, PanicHook};
pub use self::report::{PanicReport, StackFrame};

/// The body of the 500 every adapter answers when a handler panics
/// (`text/plain; charset=utf-8`, see [`PANIC_CONTENT_TYPE`]). Nothing about
/// the panic is shown to the client.
pub const PANIC_BODY: &str = "Internal Server Error";

/// The `content-type` of the 500 answered for a panic.
pub const PANIC_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// A response extension on the 500 a catch-panic layer answers for a
/// panic, so a monitor further out counts it as a panic (alerted on its
/// own) rather than in the 5xx rate: one bug, one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaughtPanic;

/// The default longest wait of a panicking thread for the sinks' answers
/// to its alert (see [`PanicHook::timeout`]): 1 s, half of what Sentry's
/// panic integration waits for a sink that doesn't answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The title's length cap, in characters (after `panic: `).
const TITLE_MAX: usize = 120;
/// The message's length cap in an alert's detail, in characters.
const MESSAGE_MAX: usize = 2000;

/// On an alert delivery thread (any alerter's), where nothing may be sent.
fn on_delivery_thread(alerter: &Alerter) -> bool {
    worker::on_delivery_thread() || alerter.is_delivery_thread()
}

/// `panic: ` and the message's first line, capped: what a lock screen shows.
fn title(message: &str) -> String {
    let first = message.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) => format!("panic: {}", truncate(line, TITLE_MAX)),
        None => "panic".to_owned(),
    }
}

/// The whole message with a blank line after it, when the title doesn't
/// show all of it (several lines, or cut); else nothing.
fn full_message(message: &str) -> String {
    let message = message.trim();
    if message.lines().nth(1).is_none() && message.chars().nth(TITLE_MAX).is_none() {
        return String::new();
    }
    format!("{}\n\n", truncate(message, MESSAGE_MAX))
}

/// The panic message: the payload if it is a string, else `Box<dyn Any>`
/// (as the standard library says).
fn payload_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned()
}

/// At most `max` characters of `s`, with `…` when cut.
fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", s.get(..end).unwrap_or(s)).into(),
        None => s.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_from_str_string_or_other_payloads() {
        let s: Box<dyn Any + Send> = Box::new("static");
        assert_eq!(payload_message(&*s), "static");
        let s: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(payload_message(&*s), "owned");
        let s: Box<dyn Any + Send> = Box::new(42_u32);
        assert_eq!(payload_message(&*s), "Box<dyn Any>");
    }

    #[test]
    fn title_is_the_first_line_capped() {
        assert_eq!(
            title("called `Option::unwrap()` on a `None` value"),
            "panic: called `Option::unwrap()` on a `None` value"
        );
        assert_eq!(title("\n  first\nsecond"), "panic: first");
        assert_eq!(title(""), "panic");
        let long = "é".repeat(300);
        let t = title(&long);
        assert_eq!(t.chars().count(), "panic: ".len() + TITLE_MAX + 1);
        assert!(t.ends_with('…'));
    }

    #[test]
    fn full_message_only_when_the_title_cuts_it() {
        assert_eq!(full_message("boom"), "");
        assert_eq!(full_message("boom\n  at line 2"), "boom\n  at line 2\n\n");
        let long = "x".repeat(TITLE_MAX + 1);
        assert_eq!(full_message(&long), format!("{long}\n\n"));
        let huge = "x".repeat(MESSAGE_MAX + 10);
        assert!(full_message(&huge).ends_with("…\n\n"));
    }
}
