//! The [`Check`] trait, its result type and the closure helper.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// The health of one check or of a whole probe, as in the IETF health check
/// response format.
///
/// `Pass` and `Warn` answer HTTP 200, `Fail` answers 503 (see
/// [`Report::http_status`](crate::health::Report::http_status)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy, with a concern (a non-critical check failing, a degraded dependency).
    Warn,
    /// Unhealthy: the probe answers 503.
    Fail,
}

impl Status {
    /// The status as written in the JSON body: `"pass"`, `"warn"` or `"fail"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one run of a [`Check`] found: a [`Status`], optional output text and an
/// optional observed value with its unit.
///
/// The output text is for operators: it is logged, and appears in HTTP bodies
/// only when the [`Details`](crate::health::Details) policy allows it.
///
/// ```
/// use watchpost::health::{CheckResult, Status};
///
/// let ok = CheckResult::pass().observed(12, "ms");
/// assert_eq!(ok.status(), Status::Pass);
///
/// let bad = CheckResult::fail("connection refused");
/// assert_eq!(bad.output(), Some("connection refused"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct CheckResult {
    pub(crate) status: Status,
    pub(crate) output: Option<String>,
    pub(crate) observed: Option<Observed>,
}

/// An observed value and its unit (IETF `observedValue` / `observedUnit`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Observed {
    pub(crate) value: serde_json::Value,
    pub(crate) unit: Option<String>,
}

impl CheckResult {
    /// A passing result.
    pub fn pass() -> Self {
        Self {
            status: Status::Pass,
            output: None,
            observed: None,
        }
    }

    /// A warning: the check works but something deserves attention. Answers 200.
    pub fn warn(output: impl Into<String>) -> Self {
        Self::pass().with_status(Status::Warn).with_output(output)
    }

    /// A failure, with the reason.
    pub fn fail(output: impl Into<String>) -> Self {
        Self::pass().with_status(Status::Fail).with_output(output)
    }

    /// Replaces the status.
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    /// Replaces the output text.
    pub fn with_output(mut self, output: impl Into<String>) -> Self {
        self.output = Some(output.into());
        self
    }

    /// Records an observed value and its unit, such as `(12, "ms")` or
    /// `(0.8, "percent")`.
    pub fn observed(
        mut self,
        value: impl Into<serde_json::Value>,
        unit: impl Into<String>,
    ) -> Self {
        self.observed = Some(Observed {
            value: value.into(),
            unit: Some(unit.into()),
        });
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The output text, if any.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// The observed value, if any.
    pub fn observed_value(&self) -> Option<&serde_json::Value> {
        self.observed.as_ref().map(|o| &o.value)
    }

    /// The unit of the observed value, if any.
    pub fn observed_unit(&self) -> Option<&str> {
        self.observed.as_ref().and_then(|o| o.unit.as_deref())
    }
}

/// Values a check closure may return: a [`CheckResult`], `()` (pass), `bool`
/// (`false` fails), or a `Result` whose error's `Display` becomes the failure
/// output.
pub trait IntoCheckResult {
    /// Converts the value.
    fn into_check_result(self) -> CheckResult;
}

impl IntoCheckResult for CheckResult {
    fn into_check_result(self) -> CheckResult {
        self
    }
}

impl IntoCheckResult for () {
    fn into_check_result(self) -> CheckResult {
        CheckResult::pass()
    }
}

impl IntoCheckResult for bool {
    fn into_check_result(self) -> CheckResult {
        if self {
            CheckResult::pass()
        } else {
            CheckResult::fail("check returned false")
        }
    }
}

impl<T: IntoCheckResult, E: fmt::Display> IntoCheckResult for Result<T, E> {
    fn into_check_result(self) -> CheckResult {
        match self {
            Ok(v) => v.into_check_result(),
            Err(e) => CheckResult::fail(e.to_string()),
        }
    }
}

/// An asynchronous health check.
///
/// Implement it with an `async fn` (the returned future must be `Send`), or
/// wrap a closure with [`fn_check`](crate::checks::fn_check). The runner
/// applies the timeout, catches panics and caches results: the check itself
/// only does its round trip.
///
/// ```
/// use watchpost::health::{Check, CheckResult};
///
/// struct QueueCheck;
///
/// impl Check for QueueCheck {
///     async fn check(&self) -> CheckResult {
///         let depth = 12; // ask the queue
///         if depth < 1000 {
///             CheckResult::pass().observed(depth, "jobs")
///         } else {
///             CheckResult::fail(format!("{depth} jobs waiting"))
///         }
///     }
/// }
/// ```
pub trait Check: Send + Sync + 'static {
    /// Runs the check once.
    fn check(&self) -> impl Future<Output = CheckResult> + Send;

    /// What the check tests, as the IETF health check format's
    /// `componentType` (in every check object of a probe's body):
    /// `"datastore"` for a database or cache, `"system"` for a host or
    /// service reached over the network, `"component"` (the default) for
    /// the rest. [`CheckSpec::component_type`](crate::health::CheckSpec::component_type)
    /// overrides it per registration.
    fn component_type(&self) -> &str {
        "component"
    }
}

pub(crate) type BoxCheckFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;

/// Object-safe form of [`Check`], used by the registry.
pub(crate) trait DynCheck: Send + Sync + 'static {
    fn call(&self) -> BoxCheckFuture<'_>;
    fn component_type(&self) -> &str;
}

impl<C: Check> DynCheck for C {
    fn call(&self) -> BoxCheckFuture<'_> {
        Box::pin(self.check())
    }

    fn component_type(&self) -> &str {
        Check::component_type(self)
    }
}

/// A [`Check`] made from a closure; see [`fn_check`](crate::checks::fn_check).
#[derive(Clone)]
pub struct FnCheck<F> {
    f: F,
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck").finish_non_exhaustive()
    }
}

/// Makes a [`Check`] from a closure or an async fn returning anything that
/// implements [`IntoCheckResult`].
///
/// ```
/// use std::sync::Arc;
/// use watchpost::checks::fn_check;
/// use watchpost::health::HealthChecks;
///
/// # struct Pool; impl Pool { async fn ping(&self) -> Result<(), std::io::Error> { Ok(()) } }
/// let pool = Arc::new(Pool);
/// let health = HealthChecks::builder()
///     .readiness("database", fn_check(move || {
///         let pool = pool.clone();
///         async move { pool.ping().await }
///     }))
///     .build()?;
/// # Ok::<(), watchpost::health::BuildError>(())
/// ```
pub fn fn_check<F, Fut, R>(f: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: IntoCheckResult,
{
    FnCheck { f }
}

impl<F, Fut, R> Check for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: IntoCheckResult,
{
    fn check(&self) -> impl Future<Output = CheckResult> + Send {
        let fut = (self.f)();
        async move { fut.await.into_check_result() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_convert() {
        assert_eq!(().into_check_result().status(), Status::Pass);
        assert_eq!(false.into_check_result().status(), Status::Fail);
        let r: Result<(), &str> = Err("boom");
        let r = r.into_check_result();
        assert_eq!((r.status(), r.output()), (Status::Fail, Some("boom")));
        let r: Result<CheckResult, &str> = Ok(CheckResult::warn("slow"));
        assert_eq!(r.into_check_result().status(), Status::Warn);
    }

    #[test]
    fn status_orders_by_severity() {
        assert!(Status::Pass < Status::Warn && Status::Warn < Status::Fail);
        assert_eq!(serde_json::to_string(&Status::Warn).unwrap(), "\"warn\"");
    }
}
