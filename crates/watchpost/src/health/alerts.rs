//! Health status flips become alert incidents:
//! [`HealthChecksBuilder::alert_on_failure`].

use crate::alert::{Alert, Alerter, Severity};

use super::builder::HealthChecksBuilder;
use super::check::Status;
use super::report::StatusChange;

impl HealthChecksBuilder {
    /// Raises an alert through `alerter` when a check goes down, and
    /// resolves it when the check comes back: two messages per outage
    /// ("firing", then "resolved" with how long it lasted), however many
    /// probes run in between.
    ///
    /// - **Every check alerts**, whichever probe runs it: a readiness check
    ///   (a dependency is down), a liveness one (the process is stuck, and
    ///   on a plain VPS nobody restarts it), one that runs only in
    ///   `/healthz`.
    /// - **Without probe traffic.** The checks run in the background on the
    ///   alerter's thread, every 10 s (or the interval given to
    ///   [`background`](Self::background)), so a dependency going down
    ///   fires its incident even when nothing calls the probes (a VPS with
    ///   no load balancer). Probes answer from the last run.
    /// - **Down** means a critical check reports `fail`, or a
    ///   [non-critical](super::CheckSpec::non_critical) one reports anything
    ///   but `pass`. A critical check reporting `warn` (degraded) is not
    ///   down.
    /// - **After the thresholds.** A check is down once
    ///   [`fail_after`](Self::fail_after) failures in a row made its
    ///   reported status `fail`, and back once
    ///   [`recover_after`](Self::recover_after) passes did: one flaky probe
    ///   alerts nobody. The first reading has no history and counts as it
    ///   is: a check failing at startup fires at once; one passing sends
    ///   nothing.
    /// - **The incident** is keyed `health:<check name>` (so
    ///   [`Alerter::is_firing`]`("health:postgres")` tells whether it is
    ///   open), with [`Severity::Critical`] for critical checks and
    ///   [`Severity::Warning`] for non-critical ones, the check's output
    ///   (the error text) as the detail and a `check` label. Alerts go to
    ///   the operator, not to HTTP clients: the output is included whatever
    ///   the [`Details`](super::Details) policy says.
    ///
    /// Two `HealthChecks` sharing an alerter should name their checks
    /// differently: their incident keys would collide.
    ///
    /// # Examples
    ///
    /// ```
    /// use watchpost::alert::Alerter;
    /// use watchpost::checks::fn_check;
    /// use watchpost::health::{HealthChecks, Probe};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let alerter = Alerter::from_env()?;
    /// let health = HealthChecks::builder()
    ///     .readiness("postgres", fn_check(|| async {
    ///         Err::<(), _>("connection refused")
    ///     }))
    ///     .fail_after(3) // three failures in a row before anyone is paged
    ///     .alert_on_failure(alerter.clone())
    ///     .build()?;
    ///
    /// // The first reading counts as it is: "FIRING: Health check postgres failing".
    /// health.evaluate(Probe::Readiness).await;
    /// assert!(alerter.is_firing("health:postgres"));
    /// # Ok(()) }
    /// ```
    pub fn alert_on_failure(mut self, alerter: Alerter) -> Self {
        self.alerter = Some(alerter.clone());
        self.on_status_change(move |change| on_change(&alerter, change))
    }
}

/// The incident key of a check.
fn key(check: &str) -> String {
    format!("health:{check}")
}

/// Whether the reported status counts as down (see `alert_on_failure`).
fn is_down(change: &StatusChange) -> bool {
    match change.current {
        Status::Fail => true,
        Status::Warn => !change.critical,
        Status::Pass => false,
    }
}

fn on_change(alerter: &Alerter, change: &StatusChange) {
    let key = key(&change.check);
    if is_down(change) {
        alerter.fire(&key, alert(change));
    } else if change.previous.is_some() {
        // Nothing is sent unless the incident is open.
        alerter.resolve(&key);
    }
}

fn alert(change: &StatusChange) -> Alert {
    let (severity, impact) = if change.critical {
        (Severity::Critical, "critical check: its probes answer 503")
    } else {
        (
            Severity::Warning,
            "non-critical check: its probes answer 200 (warn)",
        )
    };
    let output = change.output.as_deref().unwrap_or("no output");
    Alert::new(severity, format!("Health check {} failing", change.check))
        .detail(format!("{output}\n{impact}"))
        .label("check", &*change.check)
}
