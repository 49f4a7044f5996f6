//! Catch-panic scopes: what the adapters run each request in.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::report::PanicReport;
use super::{
    full_message, on_delivery_thread, payload_message, thread_name, title, truncate, MESSAGE_MAX,
};
use crate::alert::{Alert, Alerter};

/// The request description's cap, in characters.
const REQUEST_MAX: usize = 200;

thread_local! {
    /// How many catch scopes the thread is running in.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// What the panic hook made of panics inside a scope (their location
    /// and backtrace), for the scope that catches them to send: the scope
    /// knows the request and its alerter, the hook doesn't. `STASHED` says
    /// whether there is anything, so that a scope that saw no panic looks
    /// at one flag. Nothing about a scope is copied per poll.
    static STASH: RefCell<Vec<Stashed>> = const { RefCell::new(Vec::new()) };
    static STASHED: Cell<bool> = const { Cell::new(false) };
}

/// Panics stashed at most between two scope exits (a handler that catches
/// its own panics in a loop must not grow the stash without bound).
const STASH_MAX: usize = 8;

/// Makes a panic's alert, given the request it happened in.
pub(super) type BuildAlert = Box<dyn FnOnce(Option<&str>) -> Alert>;

/// A panic the hook saw inside a scope: the alert to send once the request
/// is known, and the hook's alerter (used when the scope has none).
pub(super) struct Stashed {
    pub(super) build: BuildAlert,
    pub(super) alerter: Option<Alerter>,
}

/// Whether this thread is running in a catch scope (a panic now will be
/// caught, unless the panic strategy is abort).
pub(super) fn in_scope() -> bool {
    DEPTH.try_with(Cell::get).unwrap_or(0) > 0
}

/// Keeps what the hook made of a panic for the scope that catches it.
pub(super) fn stash(stashed: Stashed) {
    let _ = STASH.try_with(|stash| {
        if let Ok(mut stash) = stash.try_borrow_mut() {
            if stash.len() < STASH_MAX {
                stash.push(stashed);
            }
        }
    });
    let _ = STASHED.try_with(|flag| flag.set(true));
}

/// The panics stashed since the last look.
fn take_stash() -> Vec<Stashed> {
    STASH
        .try_with(|stash| {
            stash
                .try_borrow_mut()
                .map(|mut stash| std::mem::take(&mut *stash))
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// A catch-panic scope: code run in it has its panics caught and turned
/// into a [`Panicked`], and watchpost's hook, knowing the process
/// survives, sends the alert without holding the thread.
///
/// The web adapters run every request in one (a panic in the handler
/// becomes a 500); use it directly for your own framework or job runner.
///
/// # Examples
///
/// ```
/// use watchpost::panic::CatchScope;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let scope = CatchScope::for_request("GET", "/orders/42");
/// let caught = scope.run(|| -> u32 { panic!("no such order") });
/// assert_eq!(caught.unwrap_err().message(), "no such order");
///
/// let answer = scope.wrap(async { 42 }).await;
/// assert_eq!(answer.ok(), Some(42));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct CatchScope {
    request: Option<RequestLine>,
    alerter: Option<Alerter>,
}

/// What a scope knows of its request. An HTTP request's method and URI are
/// kept as they are (copies of a reference count), and written out only
/// for a panic: a request that doesn't panic costs no allocation.
#[derive(Clone, Debug)]
enum RequestLine {
    Http {
        method: http::Method,
        path: Option<http::uri::PathAndQuery>,
    },
    Text {
        method: Arc<str>,
        path: Arc<str>,
    },
}

impl RequestLine {
    fn render(&self) -> Arc<str> {
        let (method, path) = match self {
            RequestLine::Http { method, path } => (
                method.as_str(),
                path.as_ref().map_or("/", http::uri::PathAndQuery::path),
            ),
            RequestLine::Text { method, path } => (&**method, &**path),
        };
        let path = truncate(path, REQUEST_MAX);
        let mut request = String::with_capacity(method.len() + path.len() + 1);
        request.push_str(method);
        request.push(' ');
        request.push_str(&path);
        request.into()
    }
}

impl CatchScope {
    /// A scope that says nothing of what it runs.
    pub fn new() -> Self {
        Self::default()
    }

    /// A scope for one request: alerts about a panic in it carry a
    /// `request` label such as `GET /orders/42`. Give the path without the
    /// query string (it may hold secrets).
    pub fn for_request(method: &str, path: &str) -> Self {
        Self {
            request: Some(RequestLine::Text {
                method: method.into(),
                path: path.into(),
            }),
            ..Self::default()
        }
    }

    /// A scope for an [`http`] request, as [`for_request`](Self::for_request)
    /// with its method and path (never the query), without an allocation
    /// unless it panics: what the tower and axum layers use.
    #[inline]
    pub fn for_http_request(method: &http::Method, uri: &http::Uri) -> Self {
        Self {
            request: Some(RequestLine::Http {
                method: method.clone(),
                path: uri.path_and_query().cloned(),
            }),
            ..Self::default()
        }
    }

    /// Panics in this scope are alerted to `alerter`, whichever alerter
    /// the panic hook was installed with (the adapters' layers pass their
    /// [`Watchpost`](crate::Watchpost)'s).
    #[must_use]
    #[inline]
    pub fn alerter(mut self, alerter: Option<&Alerter>) -> Self {
        self.alerter = alerter.cloned();
        self
    }

    /// The request this scope is for (`GET /orders/42`), if any.
    ///
    /// Written out on each call (a scope keeps the method and path as
    /// they came, so that a request that doesn't panic costs nothing).
    pub fn request(&self) -> Option<Arc<str>> {
        self.request.as_ref().map(RequestLine::render)
    }

    /// Reports `panicked` to this scope's alerter, if it has one (see
    /// [`Panicked::report`]).
    pub fn report(&self, panicked: &Panicked) {
        if let Some(alerter) = &self.alerter {
            panicked.report(alerter);
        }
    }

    /// Runs `f`, catching a panic. The closure is treated as unwind safe
    /// (`AssertUnwindSafe`): as with any catch-panic layer, state it shared
    /// may be left half-updated.
    ///
    /// # Errors
    ///
    /// [`Panicked`] if `f` panicked.
    #[inline]
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R, Panicked> {
        let entered = DEPTH.try_with(|d| d.set(d.get().saturating_add(1))).is_ok();
        let result = std::panic::catch_unwind(AssertUnwindSafe(f));
        if entered {
            let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
        }
        // The hook's alerts of what panicked in here (caught by this
        // scope, or deeper by the application's own `catch_unwind`).
        let reported = STASHED
            .try_with(|flag| flag.replace(false))
            .unwrap_or(false);
        if reported {
            self.send_stashed();
        }
        result.map_err(|payload| Panicked {
            message: payload_message(&*payload).to_owned(),
            request: self.request(),
            thread: thread_name(),
            reported,
        })
    }

    /// Sends the hook's alerts of the panics in this scope, with the
    /// request, to this scope's alerter or else the hook's.
    #[cold]
    fn send_stashed(&self) {
        let request = self.request();
        for stashed in take_stash() {
            let Some(alerter) = self.alerter.as_ref().or(stashed.alerter.as_ref()) else {
                continue;
            };
            if !on_delivery_thread(alerter) {
                alerter.send((stashed.build)(request.as_deref()));
            }
        }
    }

    /// Wraps `future`: each poll runs in this scope.
    #[inline]
    pub fn wrap<F: Future>(self, future: F) -> CatchUnwind<F> {
        CatchUnwind {
            future,
            scope: self,
        }
    }
}

pin_project! {
    /// A future whose panics are caught: it resolves to
    /// `Err(`[`Panicked`]`)` instead of unwinding into the executor. Each
    /// poll runs in a [`CatchScope`].
    ///
    /// Don't poll it again after a panic (as for any completed future).
    ///
    /// # Examples
    ///
    /// ```
    /// use watchpost::panic::CatchUnwind;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let result = CatchUnwind::new(async {
    ///     tokio::task::yield_now().await;
    ///     let orders: Vec<u32> = Vec::new();
    ///     orders[0]
    /// })
    /// .await;
    /// assert!(result.unwrap_err().message().starts_with("index out of bounds"));
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct CatchUnwind<F> {
        #[pin]
        future: F,
        scope: CatchScope,
    }
}

impl<F> CatchUnwind<F> {
    /// Wraps `future` in a plain [`CatchScope`].
    pub fn new(future: F) -> Self {
        Self {
            future,
            scope: CatchScope::new(),
        }
    }

    /// The wrapped future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// The scope each poll runs in.
    pub fn scope(&self) -> &CatchScope {
        &self.scope
    }

    /// Unwraps the future.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F> fmt::Debug for CatchUnwind<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatchUnwind")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = this.future;
        match this.scope.run(|| future.poll(cx)) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panicked) => Poll::Ready(Err(panicked)),
        }
    }
}

/// A caught panic: its message, and whether watchpost's hook already
/// alerted about it.
#[derive(Debug, Clone)]
pub struct Panicked {
    message: String,
    request: Option<Arc<str>>,
    thread: String,
    reported: bool,
}

impl Panicked {
    /// The panic message (`Box<dyn Any>` if the payload wasn't a string).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request it happened in, if the scope was for one.
    pub fn request(&self) -> Option<&str> {
        self.request.as_deref()
    }

    /// Whether watchpost's panic hook already sent (or deduplicated) an
    /// alert for this panic: [`report`](Self::report) then does nothing.
    pub fn is_reported(&self) -> bool {
        self.reported
    }

    /// Sends a critical alert for this panic to `alerter`, unless the hook
    /// already reported it (with the location and a backtrace, which only
    /// the hook can see) or this is an alert delivery thread. What adapters
    /// call when given an alerter, so a panic is alerted once whether the
    /// hook is installed or not.
    pub fn report(&self, alerter: &Alerter) {
        if self.reported || on_delivery_thread(alerter) {
            return;
        }
        let mut detail = String::new();
        let _ = write!(
            detail,
            "{}thread '{}'",
            full_message(&self.message),
            self.thread
        );
        if let Some(request) = &self.request {
            let _ = write!(detail, "\nrequest {request}");
        }
        detail.push_str(
            " (caught: the client got a 500, serving goes on)\n\n\
             Install watchpost's panic hook (watchpost::panic::install) \
             for the location and a backtrace.",
        );
        let mut alert = Alert::critical(title(&self.message))
            .detail(detail)
            .label("thread", self.thread.as_str())
            .with_panic_report(PanicReport::new(
                truncate(&self.message, MESSAGE_MAX),
                None,
                self.thread.as_str(),
                Vec::new(),
            ));
        if let Some(request) = &self.request {
            alert = alert.label("request", &**request);
        }
        alerter.send(alert);
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.message)
    }
}

impl std::error::Error for Panicked {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_catches_a_panic_and_restores_itself() {
        let outer = CatchScope::for_request("GET", "/outer");
        assert!(!in_scope());
        let result = outer.run(|| {
            assert!(in_scope());
            let inner = CatchScope::new().run(|| panic!("inner {}", 1));
            assert!(in_scope(), "the inner scope's exit leaves the outer one");
            inner
        });
        let panicked = result.unwrap().unwrap_err();
        assert_eq!(panicked.message(), "inner 1");
        assert!(!panicked.is_reported(), "no hook in unit tests");
        assert!(!in_scope());
        assert_eq!(CatchScope::new().run(|| 7).ok(), Some(7));
    }

    #[test]
    fn scope_request_is_capped() {
        let path = format!("/{}", "a".repeat(1000));
        let scope = CatchScope::for_request("GET", &path);
        assert_eq!(
            scope.request().map(|r| r.chars().count()),
            Some(4 + REQUEST_MAX + 1)
        );
    }

    #[tokio::test]
    async fn catch_unwind_passes_output_through() {
        let out = CatchUnwind::new(async {
            tokio::task::yield_now().await;
            "ok"
        })
        .await;
        assert_eq!(out.ok(), Some("ok"));
    }

    #[tokio::test]
    async fn panic_in_future_after_pending() {
        let result = CatchScope::for_request("POST", "/pay")
            .wrap(async {
                tokio::task::yield_now().await;
                if true {
                    panic!("card declined: {}", 402);
                }
            })
            .await;
        let panicked = result.unwrap_err();
        assert_eq!(panicked.message(), "card declined: 402");
        assert_eq!(panicked.request(), Some("POST /pay"));
        assert_eq!(panicked.to_string(), "panicked: card declined: 402");
        assert!(!in_scope());
    }

    #[cfg(feature = "test-util")]
    #[test]
    fn report_sends_once_unless_the_hook_did() {
        use std::time::Duration;

        use crate::alert::MemorySink;
        let sink = MemorySink::new();
        let alerter = Alerter::builder().sink(sink.clone()).build().unwrap();
        let panicked = CatchScope::for_request("GET", "/boom")
            .run(|| panic!("boom"))
            .unwrap_err();
        panicked.report(&alerter);
        assert!(alerter.flush(Duration::from_secs(5)));
        let sent = sink.notifications();
        assert_eq!(sent.len(), 1);
        let alert = sent[0].alert();
        assert_eq!(alert.title(), "panic: boom");
        assert_eq!(alert.severity(), crate::alert::Severity::Critical);
        assert!(alert.labels().any(|l| l == ("request", "GET /boom")));
        let report = alert.panic_report().unwrap();
        assert_eq!(report.message(), "boom");
        assert_eq!(report.location(), None);
        assert!(report.frames().is_empty());

        let reported = Panicked {
            reported: true,
            ..panicked
        };
        reported.report(&alerter);
        assert!(alerter.flush(Duration::from_secs(5)));
        assert_eq!(sink.len(), 1);
    }
}
