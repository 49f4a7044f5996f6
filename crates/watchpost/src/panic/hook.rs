//! The hook: install once, chain the previous one, alert every panic.

use std::fmt::{self, Write as _};
use std::panic::PanicHookInfo;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::report::{PanicReport, StackFrame};
use super::{
    backtrace, catch, full_message, on_delivery_thread, payload_message, thread_name, title,
    truncate, DEFAULT_TIMEOUT, MESSAGE_MAX,
};
use crate::alert::{Alert, Alerter, WeakAlerter};

/// The installed hook's target; the hook is installed once, for the life
/// of the process.
static HOOK: OnceLock<Mutex<HookConfig>> = OnceLock::new();

#[derive(Debug, Clone)]
struct HookConfig {
    alerter: Target,
    timeout: Duration,
    backtrace: bool,
}

/// Whom the hook alerts.
#[derive(Debug, Clone)]
enum Target {
    /// Installed with [`install`]: this alerter, for the life of the process.
    Installed(Alerter),
    /// Attached by a [`Watchpost`](crate::Watchpost): its alerter while it
    /// lives (the hook doesn't keep it alive, so dropping the handle still
    /// stops its thread); the latest handle built takes over.
    Attached(WeakAlerter),
}

impl HookConfig {
    fn alerter(&self) -> Option<Alerter> {
        match &self.alerter {
            Target::Installed(alerter) => Some(alerter.clone()),
            Target::Attached(weak) => weak.upgrade(),
        }
    }
}

fn current() -> Option<HookConfig> {
    HOOK.get()
        .map(|c| c.lock().unwrap_or_else(PoisonError::into_inner).clone())
}

/// Installs the hook (once per process) with `config`, or points the
/// installed one at `config` when `replace` says so of the current one.
/// `true` if `config` is now the target.
fn set(config: HookConfig, replace: impl FnOnce(&HookConfig) -> bool) -> bool {
    let mut fresh = false;
    let slot = HOOK.get_or_init(|| {
        fresh = true;
        // Chained inside the initialiser, so `is_installed` turns true
        // only once the hook is in place. A panic in between finds no
        // config and goes straight to the previous hook.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(config) = current() {
                on_panic(&config, info);
            }
            previous(info);
        }));
        Mutex::new(config.clone())
    });
    if fresh {
        return true;
    }
    let mut current = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if replace(&current) {
        *current = config;
        true
    } else {
        false
    }
}

/// Points the panic hook at `alerter` (a [`Watchpost`](crate::Watchpost)'s)
/// without keeping it alive, installing the hook if needed. A hook
/// installed with [`install`] keeps its alerter; another handle's is
/// replaced (the latest handle built takes over). `true` if the hook now
/// alerts `alerter`.
pub(crate) fn attach(alerter: &Alerter, timeout: Duration, backtrace: bool) -> bool {
    assert_not_panicking();
    let config = HookConfig {
        alerter: Target::Attached(alerter.downgrade()),
        timeout,
        backtrace,
    };
    set(config, |current| {
        matches!(current.alerter, Target::Attached(_))
    })
}

fn assert_not_panicking() {
    assert!(
        !std::thread::panicking(),
        "cannot install the panic hook from a panicking thread"
    );
}

/// Installs watchpost's panic hook with the default settings (1 s delivery
/// timeout, backtraces on). See the [module docs](super) for what it does,
/// and [`PanicHook`] for the settings.
///
/// Call it once, at startup, after building the [`Alerter`]. The hook keeps
/// a clone of the alerter for the life of the process.
///
/// # Panics
///
/// If watchpost's hook is already installed (use [`try_install`] to get an
/// error instead), or when called while the thread is panicking (as
/// [`std::panic::set_hook`] does).
///
/// # Examples
///
/// ```
/// use watchpost::alert::Alerter;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // TELEGRAM_BOT_TOKEN + TELEGRAM_CHAT_ID, WATCHPOST_WEBHOOK_URL, ...;
/// // with nothing set, panics are alerted to the log.
/// let alerter = Alerter::from_env()?;
/// watchpost::panic::install(&alerter);
/// assert!(watchpost::panic::is_installed());
/// # Ok(()) }
/// ```
pub fn install(alerter: &Alerter) {
    PanicHook::new(alerter).install();
}

/// Installs watchpost's panic hook with the default settings, unless it is
/// already installed.
///
/// # Errors
///
/// [`AlreadyInstalled`] if watchpost's hook was installed before (by any
/// alerter); the first one stays.
///
/// # Panics
///
/// When called while the thread is panicking (as [`std::panic::set_hook`]
/// does).
pub fn try_install(alerter: &Alerter) -> Result<(), AlreadyInstalled> {
    PanicHook::new(alerter).try_install()
}

/// Whether watchpost's panic hook is installed.
pub fn is_installed() -> bool {
    HOOK.get().is_some()
}

/// The panic hook's settings, and how to install it with them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use watchpost::alert::Alerter;
/// use watchpost::panic::PanicHook;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let alerter = Alerter::from_env()?;
/// PanicHook::new(&alerter)
///     .timeout(Duration::from_secs(3)) // a sink far away
///     .backtrace(false)                // no symbols shipped
///     .try_install()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "the hook does nothing until `install` or `try_install` is called"]
pub struct PanicHook {
    alerter: Alerter,
    timeout: Duration,
    backtrace: bool,
}

impl PanicHook {
    /// A hook sending to `alerter`, with a 1 s delivery timeout
    /// ([`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT)) and backtraces on.
    pub fn new(alerter: &Alerter) -> Self {
        Self {
            alerter: alerter.clone(),
            timeout: DEFAULT_TIMEOUT,
            backtrace: true,
        }
    }

    /// How long the panicking thread waits for the sinks' answers to its
    /// alert at most, once the alert is built (default 1 s,
    /// [`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT)); building it, the
    /// backtrace included, takes a millisecond or two in an optimized
    /// build.
    ///
    /// The wait ends as soon as every sink has answered the alert (a
    /// success is the only proof an API has it: a request written but not
    /// answered may still be lost; an error status is final for the hook),
    /// or failed to take it without an answer (a refused connection, an
    /// unknown host: final too, the hook waits out no retry). So this
    /// bounds only a sink that is slow to answer, or a network that is
    /// slow to reach it: raise it for a sink far away behind a slow link
    /// (a TLS handshake and a request take a few round trips). Whatever
    /// the hook stops waiting for stays queued (and in the store's outbox,
    /// when it keeps one): a process that lives on delivers it, with
    /// retries. See the [module docs](super) for the hold times measured.
    ///
    /// Not waited inside a [`CatchScope`](super::CatchScope) (the process
    /// goes on), nor for a panic dedupe suppressed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether alerts carry a backtrace (default `true`). Capturing one
    /// reads the binary's debug info, which takes a moment the first time.
    pub fn backtrace(mut self, enabled: bool) -> Self {
        self.backtrace = enabled;
        self
    }

    /// Installs the hook.
    ///
    /// # Panics
    ///
    /// If watchpost's hook is already installed, or when called while the
    /// thread is panicking.
    pub fn install(self) {
        if let Err(e) = self.try_install() {
            panic!("{e}");
        }
    }

    /// Installs the hook, unless watchpost's hook is already installed.
    ///
    /// # Errors
    ///
    /// [`AlreadyInstalled`] if it is; the first one stays.
    ///
    /// # Panics
    ///
    /// When called while the thread is panicking (as
    /// [`std::panic::set_hook`] does).
    pub fn try_install(self) -> Result<(), AlreadyInstalled> {
        assert_not_panicking();
        let config = HookConfig {
            alerter: Target::Installed(self.alerter),
            timeout: self.timeout,
            backtrace: self.backtrace,
        };
        // A hook only attached by a `Watchpost` gives way to an explicit
        // install.
        if set(config, |current| {
            matches!(current.alerter, Target::Attached(_))
        }) {
            Ok(())
        } else {
            Err(AlreadyInstalled { _private: () })
        }
    }
}

/// [`try_install`] was called when watchpost's panic hook was already
/// installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyInstalled {
    _private: (),
}

impl fmt::Display for AlreadyInstalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("watchpost's panic hook is already installed")
    }
}

impl std::error::Error for AlreadyInstalled {}

/// The hook itself. Must never panic (a panic in a panic hook aborts):
/// nothing here unwraps, indexes or formats with a fallible `to_string`.
fn on_panic(config: &HookConfig, info: &PanicHookInfo<'_>) {
    // In a catch scope (a request under a catch-panic layer) the panic is
    // caught: the scope sends the alert, with its request and to its own
    // alerter (several handles in one process, in tests) or else the
    // hook's, and nobody waits. Under `panic = "abort"` nothing is caught:
    // wait as for any panic.
    let caught = catch::in_scope() && cfg!(panic = "unwind");
    let alerter = config.alerter();
    if alerter.as_ref().is_some_and(on_delivery_thread) {
        // A sink, the store or a check panicked on watchpost's thread: an
        // alert would go back into it.
        return;
    }
    if alerter.is_none() && !caught {
        return;
    }
    // Relative to its crate, as the backtrace's paths are: never the build
    // machine's directories (a dependency's file is `tokio-1.48.0/src/…`).
    let location = info.location().map(|l| {
        format!(
            "{}:{}:{}",
            backtrace::short_file(l.file()),
            l.line(),
            l.column()
        )
    });
    let (backtrace, frames) = match config.backtrace.then(backtrace::capture) {
        Some(captured) => (Some(captured.text), captured.frames),
        None => (None, Vec::new()),
    };
    let message = payload_message(info.payload()).to_owned();
    let thread = thread_name();
    let alert = move |request: Option<&str>, caught: bool| {
        panic_alert(&PanicDetails {
            message: &message,
            location: location.as_deref(),
            thread: &thread,
            request,
            caught,
            backtrace: backtrace.as_deref(),
            frames: &frames,
        })
    };
    match alerter {
        _ if caught => catch::stash(catch::Stashed {
            build: Box::new(move |request: Option<&str>| alert(request, true)),
            alerter,
        }),
        Some(alerter) => {
            alerter.send_and_wait(alert(None, false), config.timeout);
        }
        None => {}
    }
}

/// What a panic alert is made of.
struct PanicDetails<'a> {
    message: &'a str,
    location: Option<&'a str>,
    thread: &'a str,
    request: Option<&'a str>,
    caught: bool,
    backtrace: Option<&'a str>,
    /// The backtrace's frames, innermost first.
    frames: &'a [StackFrame],
}

/// The alert: the text detail every sink shows, and the structured
/// [`PanicReport`] for the sinks that show stack traces.
fn panic_alert(d: &PanicDetails<'_>) -> Alert {
    let location = d.location.unwrap_or("unknown location");
    let mut detail = String::new();
    let _ = write!(
        detail,
        "{}at {location}\nthread '{}'",
        full_message(d.message),
        d.thread
    );
    if let Some(request) = d.request {
        let _ = write!(detail, "\nrequest {request}");
    }
    if d.caught {
        let _ = write!(detail, " (caught: the client got a 500, serving goes on)");
    }
    if let Some(backtrace) = d.backtrace {
        let _ = write!(detail, "\n\nbacktrace:\n{backtrace}");
    }
    let mut alert = Alert::critical(title(d.message))
        .key(format!("panic:{location}"))
        .detail(detail)
        .label("thread", d.thread)
        .label("location", location)
        .with_panic_report(PanicReport::new(
            truncate(d.message, MESSAGE_MAX),
            d.location,
            d.thread,
            d.frames.to_vec(),
        ));
    if let Some(request) = d.request {
        alert = alert.label("request", request);
    }
    alert
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_is_keyed_by_location_and_labelled() {
        let alert = panic_alert(&PanicDetails {
            message: "boom",
            location: Some("src/main.rs:12:5"),
            thread: "main",
            request: Some("GET /x"),
            caught: true,
            backtrace: Some("  0: app::main\n"),
            frames: &[StackFrame::parse(
                "app::main",
                Some("at ./src/main.rs:12:5"),
            )],
        });
        assert_eq!(alert.title(), "panic: boom");
        assert_eq!(alert.explicit_key(), Some("panic:src/main.rs:12:5"));
        assert_eq!(alert.severity(), crate::alert::Severity::Critical);
        let labels: Vec<_> = alert.labels().collect();
        assert_eq!(
            labels,
            [
                ("thread", "main"),
                ("location", "src/main.rs:12:5"),
                ("request", "GET /x")
            ]
        );
        let detail = alert.detail_text().unwrap_or_default();
        assert!(detail.starts_with("at src/main.rs:12:5\nthread 'main'\nrequest GET /x (caught"));
        assert!(detail.ends_with("backtrace:\n  0: app::main\n"), "{detail}");

        let report = alert.panic_report().unwrap();
        assert_eq!(report.message(), "boom");
        assert_eq!(report.location(), Some("src/main.rs:12:5"));
        assert_eq!(report.thread(), "main");
        assert_eq!(report.frames().len(), 1);
        assert_eq!(report.frames()[0].function(), "app::main");
        assert_eq!(report.frames()[0].line(), Some(12));
    }

    #[test]
    fn unknown_location_and_no_backtrace_give_an_empty_report() {
        let alert = panic_alert(&PanicDetails {
            message: "boom",
            location: None,
            thread: "worker",
            request: None,
            caught: false,
            backtrace: None,
            frames: &[],
        });
        assert_eq!(alert.explicit_key(), Some("panic:unknown location"));
        let report = alert.panic_report().unwrap();
        assert_eq!(report.location(), None);
        assert!(report.frames().is_empty());
    }

    #[test]
    fn already_installed_displays_lowercase() {
        let e = AlreadyInstalled { _private: () };
        assert_eq!(e.to_string(), "watchpost's panic hook is already installed");
    }
}
