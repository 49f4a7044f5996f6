//! [`Report`]: the result of a probe, and its `application/health+json` form.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::check::{Observed, Status};

/// The outcome of a probe: an overall [`Status`] and one [`CheckReport`] per
/// check, in registration order.
///
/// Its `Serialize` form is the IETF health check response format
/// (`application/health+json`) with every detail; HTTP probes serialize a
/// reduced form that follows the [`Details`](crate::health::Details) policy.
#[derive(Clone, Debug)]
pub struct Report {
    pub(crate) status: Status,
    pub(crate) checks: Vec<CheckReport>,
    pub(crate) output: Option<&'static str>,
    pub(crate) duration: Duration,
}

/// One check's line in a [`Report`].
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub(crate) name: Arc<str>,
    pub(crate) component_type: Arc<str>,
    pub(crate) status: Status,
    pub(crate) critical: bool,
    pub(crate) output: Option<String>,
    pub(crate) observed: Option<Observed>,
    pub(crate) time: SystemTime,
    pub(crate) duration: Duration,
}

/// A check's reported status changed; see
/// [`HealthChecksBuilder::on_status_change`](crate::health::HealthChecksBuilder::on_status_change).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StatusChange {
    /// The check's name.
    pub check: Arc<str>,
    /// The status before, or `None` for the check's first reading.
    pub previous: Option<Status>,
    /// The status now, as bodies show it (a failing non-critical check is `Warn`).
    pub current: Status,
    /// The check's output text (never sent to HTTP clients from here).
    pub output: Option<String>,
    /// Whether the check is critical.
    pub critical: bool,
}

impl Report {
    pub(crate) fn new(checks: Vec<CheckReport>, duration: Duration) -> Self {
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass);
        Self {
            status,
            checks,
            output: None,
            duration,
        }
    }

    /// A failing report that ran no check (shutting down, not yet ready).
    pub(crate) fn gated(reason: &'static str) -> Self {
        Self {
            status: Status::Fail,
            checks: Vec::new(),
            output: Some(reason),
            duration: Duration::ZERO,
        }
    }

    /// The overall status: `fail` if a critical check fails, `warn` if a check
    /// warns or a non-critical check fails, `pass` otherwise (also when there
    /// are no checks).
    pub fn status(&self) -> Status {
        self.status
    }

    /// The HTTP status to answer: 200 for `pass` and `warn`, 503 for `fail`.
    pub fn http_status(&self) -> u16 {
        match self.status {
            Status::Pass | Status::Warn => 200,
            Status::Fail => 503,
        }
    }

    /// The checks, in registration order.
    pub fn checks(&self) -> &[CheckReport] {
        &self.checks
    }

    /// Looks a check up by name.
    pub fn check(&self, name: &str) -> Option<&CheckReport> {
        self.checks.iter().find(|c| &*c.name == name)
    }

    /// Why the probe failed without running checks (`"shutting down"`,
    /// `"starting"`), if it did.
    pub fn output(&self) -> Option<&str> {
        self.output
    }

    /// How long the evaluation took (cached results take no time).
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The report as `application/health+json` bytes, with the given detail.
    pub(crate) fn to_json(&self, verbose: bool, details: bool) -> Vec<u8> {
        let view = View {
            report: self,
            verbose,
            details,
        };
        // Serializing these plain maps cannot fail; keep a valid body if it did.
        serde_json::to_vec(&view).unwrap_or_else(|_| br#"{"status":"fail"}"#.to_vec())
    }
}

impl CheckReport {
    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the check tests (`datastore`, `system`, `component`).
    pub fn component_type(&self) -> &str {
        &self.component_type
    }

    /// The check's status as reported: thresholds applied, and a failing
    /// non-critical check shown as `warn`.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether a failure of this check fails the probe.
    pub fn is_critical(&self) -> bool {
        self.critical
    }

    /// The output text of the reading, if any.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// The observed value, if the check recorded one.
    pub fn observed_value(&self) -> Option<&serde_json::Value> {
        self.observed.as_ref().map(|o| &o.value)
    }

    /// The unit of the observed value.
    pub fn observed_unit(&self) -> Option<&str> {
        self.observed.as_ref().and_then(|o| o.unit.as_deref())
    }

    /// When the reading was taken.
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// How long the check ran.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        View {
            report: self,
            verbose: true,
            details: true,
        }
        .serialize(serializer)
    }
}

/// A report serialized at a chosen level of detail.
struct View<'a> {
    report: &'a Report,
    verbose: bool,
    details: bool,
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("status", &self.report.status)?;
        if let Some(output) = self.report.output {
            map.serialize_entry("output", output)?;
        }
        if !self.report.checks.is_empty() {
            map.serialize_entry("checks", &ChecksView(self))?;
        }
        map.end()
    }
}

struct ChecksView<'a>(&'a View<'a>);

impl Serialize for ChecksView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = self.0;
        let mut map = serializer.serialize_map(Some(view.report.checks.len()))?;
        for check in &view.report.checks {
            // IETF: each key maps to an array of measurements.
            map.serialize_entry(
                &*check.name,
                &[CheckView {
                    check,
                    verbose: view.verbose,
                    details: view.details,
                }],
            )?;
        }
        map.end()
    }
}

struct CheckView<'a> {
    check: &'a CheckReport,
    verbose: bool,
    details: bool,
}

impl Serialize for CheckView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.check;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("status", &c.status)?;
        map.serialize_entry("componentType", &*c.component_type)?;
        if self.verbose {
            map.serialize_entry(
                "time",
                &humantime::format_rfc3339_millis(c.time).to_string(),
            )?;
            let ms = (c.duration.as_secs_f64() * 1_000_000.0).round() / 1000.0;
            map.serialize_entry("durationMs", &ms)?;
            if let Some(observed) = &c.observed {
                map.serialize_entry("observedValue", &observed.value)?;
                if let Some(unit) = &observed.unit {
                    map.serialize_entry("observedUnit", unit)?;
                }
            }
            if !c.critical {
                map.serialize_entry("critical", &false)?;
            }
        }
        if self.details && c.status != Status::Pass {
            if let Some(output) = &c.output {
                map.serialize_entry("output", output)?;
            }
        }
        map.end()
    }
}
