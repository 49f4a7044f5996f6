//! Catch-panic scopes: what the adapters run each request in.

use std::cell::Cell;
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
    /// The innermost catch scope running on this thread, if any.
    static SCOPE: Cell<Option<CatchScope>> = const { Cell::new(None) };
    /// Set by the hook when it reported a panic inside a scope.
    static REPORTED: Cell<bool> = const { Cell::new(false) };
}

/// The catch scope running on this thread, if any.
pub(super) fn current_scope() -> Option<CatchScope> {
    SCOPE
        .try_with(|cell| {
            let scope = cell.take();
            let copy = scope.clone();
            cell.set(scope);
            copy
        })
        .ok()
        .flatten()
}

/// The hook reported the panic in progress (inside a scope).
pub(super) fn mark_reported() {
    let _ = REPORTED.try_with(|r| r.set(true));
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
    request: Option<Arc<str>>,
    alerter: Option<Alerter>,
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
        let mut request = String::with_capacity(method.len() + path.len() + 1);
        request.push_str(method);
        request.push(' ');
        request.push_str(&truncate(path, REQUEST_MAX));
        Self {
            request: Some(request.into()),
            alerter: None,
        }
    }

    /// Panics in this scope are alerted to `alerter`, whichever alerter
    /// the panic hook was installed with (the adapters' layers pass their
    /// [`Watchpost`](crate::Watchpost)'s).
    #[must_use]
    pub fn alerter(mut self, alerter: Option<&Alerter>) -> Self {
        self.alerter = alerter.cloned();
        self
    }

    /// The request this scope is for (`GET /orders/42`), if any.
    pub fn request(&self) -> Option<&str> {
        self.request.as_deref()
    }

    /// The alerter panics in this scope go to, if set.
    pub(super) fn alerter_ref(&self) -> Option<&Alerter> {
        self.alerter.as_ref()
    }

    /// Runs `f`, catching a panic. The closure is treated as unwind safe
    /// (`AssertUnwindSafe`): as with any catch-panic layer, state it shared
    /// may be left half-updated.
    ///
    /// # Errors
    ///
    /// [`Panicked`] if `f` panicked.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R, Panicked> {
        let previous = SCOPE.try_with(|s| s.replace(Some(self.clone()))).ok();
        let _ = REPORTED.try_with(|r| r.set(false));
        let result = std::panic::catch_unwind(AssertUnwindSafe(f));
        if let Some(previous) = previous {
            let _ = SCOPE.try_with(|s| s.set(previous));
        }
        result.map_err(|payload| Panicked {
            message: payload_message(&*payload).to_owned(),
            request: self.request.clone(),
            thread: thread_name(),
            reported: REPORTED.try_with(|r| r.replace(false)).unwrap_or(false),
        })
    }

    /// Wraps `future`: each poll runs in this scope.
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
        let result = outer.run(|| {
            assert_eq!(
                current_scope().and_then(|s| s.request).as_deref(),
                Some("GET /outer")
            );
            let inner = CatchScope::new().run(|| panic!("inner {}", 1));
            assert_eq!(
                current_scope().and_then(|s| s.request).as_deref(),
                Some("GET /outer")
            );
            inner
        });
        let panicked = result.unwrap().unwrap_err();
        assert_eq!(panicked.message(), "inner 1");
        assert!(!panicked.is_reported(), "no hook in unit tests");
        assert!(current_scope().is_none());
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
        assert!(current_scope().is_none());
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
