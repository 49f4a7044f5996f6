//! [`HealthChecksBuilder`], [`CheckSpec`] and their configuration types.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::check::{Check, DynCheck};
use super::registry::{Entry, HealthChecks};
use super::report::StatusChange;
use crate::alert::Alerter;
use crate::clock::Clock;

/// Which probe a report answers.
///
/// Kubernetes' convention: liveness says the process can make progress (restart
/// it if not), readiness says it can serve traffic (stop routing to it if not),
/// and `Health` runs every registered check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// `/livez`: checks registered with [`HealthChecksBuilder::liveness`].
    Liveness,
    /// `/readyz`: checks registered with [`HealthChecksBuilder::readiness`].
    Readiness,
    /// `/healthz`: every check.
    Health,
}

/// Who may see a failing check's error text in HTTP bodies.
///
/// The text is always logged with `tracing`. The default, `Never`, keeps a
/// public `/healthz` from telling the internet your database host name.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Details {
    /// Bodies carry check names and statuses only.
    #[default]
    Never,
    /// Bodies carry the error text of failing checks.
    Always,
    /// The error text is shown to requests carrying the token, as
    /// `Authorization: Bearer <token>` or `?token=<token>` (compared in
    /// constant time). Prefer the header: query strings end up in access logs.
    WithToken(Token),
}

impl Details {
    /// Shorthand for `Details::WithToken(Token::new(token))`.
    pub fn with_token(token: impl Into<String>) -> Self {
        Details::WithToken(Token::new(token))
    }
}

/// A secret that unlocks [`Details::WithToken`]; never printed by `Debug`.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    /// Wraps a secret. Surrounding whitespace is trimmed.
    pub fn new(token: impl Into<String>) -> Self {
        Token(Arc::from(token.into().trim()))
    }

    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.0.as_bytes();
        // Lengths are compared openly (as every constant-time comparison of
        // variable-length secrets does); the bytes in constant time.
        expected.len() == presented.len() && bool::from(expected.ct_eq(presented))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// How checks are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Probes run checks (single-flight, cached for `cache_for`).
    OnDemand,
    /// A background task runs every check on this interval; probes read the
    /// last snapshot.
    Background(Duration),
}

/// One check with its options, for [`HealthChecksBuilder::register`].
///
/// [`HealthChecksBuilder::liveness`] and [`readiness`](HealthChecksBuilder::readiness)
/// cover the common case; a `CheckSpec` sets per-check options.
///
/// ```
/// use std::time::Duration;
/// use watchpost::checks::{fn_check, TcpCheck};
/// use watchpost::health::{CheckSpec, HealthChecks};
///
/// let health = HealthChecks::builder()
///     .register(
///         CheckSpec::new("search", TcpCheck::new("127.0.0.1:9200"))
///             .readiness()
///             .non_critical()               // failing gives "warn", HTTP 200
///             .timeout(Duration::from_millis(500))
///             .fail_after(3)                // three failures in a row before "fail"
///             .recover_after(2),
///     )
///     .build()?;
/// # Ok::<(), watchpost::health::BuildError>(())
/// ```
#[must_use = "a CheckSpec does nothing until passed to HealthChecksBuilder::register"]
pub struct CheckSpec {
    pub(crate) name: String,
    pub(crate) check: Arc<dyn DynCheck>,
    pub(crate) liveness: bool,
    pub(crate) readiness: bool,
    pub(crate) critical: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) fail_after: Option<u32>,
    pub(crate) recover_after: Option<u32>,
    pub(crate) component_type: Option<String>,
}

impl fmt::Debug for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckSpec")
            .field("name", &self.name)
            .field("liveness", &self.liveness)
            .field("readiness", &self.readiness)
            .field("critical", &self.critical)
            .field("timeout", &self.timeout)
            .field("fail_after", &self.fail_after)
            .field("recover_after", &self.recover_after)
            .field("component_type", &self.component_type)
            .finish_non_exhaustive()
    }
}

impl CheckSpec {
    /// A critical check that belongs to no probe yet: on its own it runs only
    /// in `/healthz`. Add it to probes with [`liveness`](Self::liveness) and
    /// [`readiness`](Self::readiness).
    pub fn new(name: impl Into<String>, check: impl Check) -> Self {
        Self {
            name: name.into(),
            check: Arc::new(check),
            liveness: false,
            readiness: false,
            critical: true,
            timeout: None,
            fail_after: None,
            recover_after: None,
            component_type: None,
        }
    }

    /// The check's `componentType` in probe bodies, replacing the check's
    /// own ([`Check::component_type`]): `"datastore"`, `"system"`,
    /// `"component"`, or any word of yours.
    pub fn component_type(mut self, component_type: impl Into<String>) -> Self {
        self.component_type = Some(component_type.into());
        self
    }

    /// Also runs in the liveness probe. Put only checks of the process itself
    /// here (a stuck worker loop), never dependencies: a database outage must
    /// not make Kubernetes restart every pod.
    pub fn liveness(mut self) -> Self {
        self.liveness = true;
        self
    }

    /// Also runs in the readiness probe.
    pub fn readiness(mut self) -> Self {
        self.readiness = true;
        self
    }

    /// A failure of this check makes the probe `warn` (HTTP 200) instead of
    /// `fail` (503).
    pub fn non_critical(mut self) -> Self {
        self.critical = false;
        self
    }

    /// This check's timeout, replacing the builder's default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Consecutive failures before the check is reported failing (default: the
    /// builder's, 1).
    pub fn fail_after(mut self, n: u32) -> Self {
        self.fail_after = Some(n);
        self
    }

    /// Consecutive non-failing runs before a failing check is reported
    /// recovered (default: the builder's, 1).
    pub fn recover_after(mut self, n: u32) -> Self {
        self.recover_after = Some(n);
        self
    }
}

pub(crate) type Listener = Arc<dyn Fn(&StatusChange) + Send + Sync>;

/// The URL paths the probes answer on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Paths {
    pub(crate) livez: Cow<'static, str>,
    pub(crate) readyz: Cow<'static, str>,
    pub(crate) healthz: Cow<'static, str>,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            livez: Cow::Borrowed("/livez"),
            readyz: Cow::Borrowed("/readyz"),
            healthz: Cow::Borrowed("/healthz"),
        }
    }
}

/// Builds [`HealthChecks`]; see the [module docs](crate::health) for an example.
#[must_use = "a builder does nothing until build() is called"]
pub struct HealthChecksBuilder {
    specs: Vec<CheckSpec>,
    timeout: Duration,
    cache_for: Duration,
    fail_after: u32,
    recover_after: u32,
    details: Details,
    mode: Mode,
    require_mark_ready: bool,
    listeners: Vec<Listener>,
    paths: Paths,
    clock: Option<Clock>,
    pub(crate) alerter: Option<Alerter>,
}

impl fmt::Debug for HealthChecksBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecksBuilder")
            .field("specs", &self.specs)
            .field("timeout", &self.timeout)
            .field("cache_for", &self.cache_for)
            .field("fail_after", &self.fail_after)
            .field("recover_after", &self.recover_after)
            .field("details", &self.details)
            .field("mode", &self.mode)
            .field("require_mark_ready", &self.require_mark_ready)
            .field("listeners", &self.listeners.len())
            .field("paths", &self.paths)
            .field("clock", &self.clock)
            .field("alerter", &self.alerter.is_some())
            .finish()
    }
}

impl Default for HealthChecksBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthChecksBuilder {
    /// Default timeout of each check.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default time a result is reused.
    pub const DEFAULT_CACHE_FOR: Duration = Duration::from_secs(1);
    /// Default interval of background runs: checks run this often on
    /// watchpost's thread when an alerter is attached.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

    /// A builder with no checks and the defaults: 2 s timeout, results cached
    /// for 1 s, thresholds of 1, [`Details::Never`], checks run on demand.
    pub fn new() -> Self {
        Self {
            specs: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            cache_for: Self::DEFAULT_CACHE_FOR,
            fail_after: 1,
            recover_after: 1,
            details: Details::Never,
            mode: Mode::OnDemand,
            require_mark_ready: false,
            listeners: Vec::new(),
            paths: Paths::default(),
            clock: None,
            alerter: None,
        }
    }

    /// Adds a critical check to the liveness probe (and `/healthz`).
    pub fn liveness(self, name: impl Into<String>, check: impl Check) -> Self {
        self.register(CheckSpec::new(name, check).liveness())
    }

    /// Adds a critical check to the readiness probe (and `/healthz`).
    pub fn readiness(self, name: impl Into<String>, check: impl Check) -> Self {
        self.register(CheckSpec::new(name, check).readiness())
    }

    /// Adds a check with its own options. Registering a name twice is an error
    /// reported by [`build`](Self::build); to put one check in both probes,
    /// use `CheckSpec::new(..).liveness().readiness()`.
    pub fn register(mut self, spec: CheckSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// Default timeout of each check (default 2 s). A check still running at
    /// its timeout is dropped and reported failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a result is reused (default 1 s). Concurrent probes share one
    /// run of each check, and no check runs more than once per period,
    /// however many requests arrive. `Duration::ZERO` still shares in-flight
    /// runs.
    pub fn cache_for(mut self, period: Duration) -> Self {
        self.cache_for = period;
        self
    }

    /// Default number of consecutive failures before a check is reported
    /// failing (default 1).
    pub fn fail_after(mut self, n: u32) -> Self {
        self.fail_after = n;
        self
    }

    /// Default number of consecutive non-failing runs before a failing check is
    /// reported recovered (default 1).
    pub fn recover_after(mut self, n: u32) -> Self {
        self.recover_after = n;
        self
    }

    /// Who sees error text in HTTP bodies (default [`Details::Never`]).
    pub fn details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }

    /// Runs every check on this interval in the background; probes then
    /// only read the last snapshot (a probe that comes before the first
    /// run waits for it).
    ///
    /// With an alerter attached ([`alert_on_failure`](Self::alert_on_failure),
    /// or a [`Watchpost`](crate::Watchpost)), checks always run in the
    /// background, on watchpost's thread, every 10 s unless set here: a
    /// dependency going down fires its incident with no probe traffic at
    /// all. Without one, spawn [`HealthChecks::background_task`] (or call
    /// [`spawn_background`](HealthChecks::spawn_background)).
    pub fn background(mut self, interval: Duration) -> Self {
        self.mode = Mode::Background(interval);
        self
    }

    /// The clock behind caching, timeouts and background runs (default:
    /// the attached alerter's, or [`Clock::system`]). Tests pass a
    /// [`ManualClock`](crate::ManualClock)'s.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Readiness answers 503 until [`HealthChecks::mark_ready`] is called (for
    /// warm-up work: migrations, cache loading).
    pub fn require_mark_ready(mut self) -> Self {
        self.require_mark_ready = true;
        self
    }

    /// Calls `listener` each time a check's reported status changes (after
    /// the `fail_after`/`recover_after` thresholds), including its first
    /// reading. The listener runs on the task that ran the check: keep it
    /// quick and non-blocking.
    pub fn on_status_change(
        mut self,
        listener: impl Fn(&StatusChange) + Send + Sync + 'static,
    ) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Replaces the probe paths (defaults `/livez`, `/readyz`, `/healthz`).
    /// Each must start with `/` and not end with one.
    pub fn paths(
        mut self,
        livez: impl Into<Cow<'static, str>>,
        readyz: impl Into<Cow<'static, str>>,
        healthz: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.paths = Paths {
            livez: livez.into(),
            readyz: readyz.into(),
            healthz: healthz.into(),
        };
        self
    }

    /// Validates the configuration and builds the registry.
    ///
    /// # Errors
    ///
    /// A check name that is empty, contains `/` or is registered twice; a zero
    /// timeout, threshold or background interval; an empty token; or an
    /// invalid or duplicate path.
    pub fn build(self) -> Result<HealthChecks, BuildError> {
        if self.timeout.is_zero() {
            return Err(BuildError::ZeroTimeout { check: None });
        }
        if self.fail_after == 0 || self.recover_after == 0 {
            return Err(BuildError::ZeroThreshold { check: None });
        }
        if let Mode::Background(interval) = self.mode {
            if interval.is_zero() {
                return Err(BuildError::ZeroInterval);
            }
        }
        if let Details::WithToken(token) = &self.details {
            if token.is_empty() {
                return Err(BuildError::EmptyToken);
            }
        }
        let paths = [&self.paths.livez, &self.paths.readyz, &self.paths.healthz];
        for (i, path) in paths.iter().enumerate() {
            let valid = path.len() > 1
                && path.starts_with('/')
                && !path.ends_with('/')
                && !path.contains(['?', '#', '{', '}', '*', ':']);
            if !valid || paths[..i].contains(path) {
                return Err(BuildError::InvalidPath(path.to_string()));
            }
        }

        let mut entries: Vec<Entry> = Vec::with_capacity(self.specs.len());
        for spec in self.specs {
            let name = spec.name.trim().to_owned();
            if name.is_empty() || name.contains('/') {
                return Err(BuildError::InvalidName(spec.name));
            }
            if entries.iter().any(|e| *e.name == *name) {
                return Err(BuildError::DuplicateName(name));
            }
            let timeout = spec.timeout.unwrap_or(self.timeout);
            if timeout.is_zero() {
                return Err(BuildError::ZeroTimeout { check: Some(name) });
            }
            let fail_after = spec.fail_after.unwrap_or(self.fail_after);
            let recover_after = spec.recover_after.unwrap_or(self.recover_after);
            if fail_after == 0 || recover_after == 0 {
                return Err(BuildError::ZeroThreshold { check: Some(name) });
            }
            let component_type: Arc<str> = match spec.component_type {
                Some(kind) => kind.into(),
                None => spec.check.component_type().into(),
            };
            entries.push(Entry::new(
                name.into(),
                component_type,
                spec.check,
                spec.liveness,
                spec.readiness,
                spec.critical,
                timeout,
                fail_after,
                recover_after,
            ));
        }

        let mode = match (self.mode, &self.alerter) {
            (Mode::OnDemand, Some(_)) => Mode::Background(Self::DEFAULT_INTERVAL),
            (mode, _) => mode,
        };
        let clock = self
            .clock
            .or_else(|| self.alerter.as_ref().map(|a| a.clock().clone()))
            .unwrap_or_default();
        Ok(HealthChecks::from_parts(
            entries,
            self.cache_for,
            self.details,
            mode,
            self.require_mark_ready,
            self.listeners,
            self.paths,
            clock,
            self.alerter,
        ))
    }
}

/// A configuration error reported by [`HealthChecksBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A check name is empty or contains `/`.
    InvalidName(String),
    /// Two checks have the same name.
    DuplicateName(String),
    /// A timeout of zero (for the named check, or the default).
    ZeroTimeout {
        /// The check, or `None` for the builder's default.
        check: Option<String>,
    },
    /// A `fail_after` or `recover_after` of zero.
    ZeroThreshold {
        /// The check, or `None` for the builder's default.
        check: Option<String>,
    },
    /// A background interval of zero.
    ZeroInterval,
    /// `Details::WithToken` with an empty token.
    EmptyToken,
    /// A probe path that is empty, lacks the leading `/`, ends with `/`,
    /// contains a route pattern character or is used twice.
    InvalidPath(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let for_check = |check: &Option<String>| match check {
            Some(name) => format!(" for check {name:?}"),
            None => String::new(),
        };
        match self {
            BuildError::InvalidName(name) => {
                write!(
                    f,
                    "invalid check name {name:?}: it must be non-empty and contain no '/'"
                )
            }
            BuildError::DuplicateName(name) => write!(f, "check {name:?} is registered twice"),
            BuildError::ZeroTimeout { check } => {
                write!(
                    f,
                    "health check timeout{} must be greater than zero",
                    for_check(check)
                )
            }
            BuildError::ZeroThreshold { check } => write!(
                f,
                "fail_after and recover_after{} must be at least 1",
                for_check(check)
            ),
            BuildError::ZeroInterval => {
                f.write_str("background interval must be greater than zero")
            }
            BuildError::EmptyToken => f.write_str("the details token is empty"),
            BuildError::InvalidPath(path) => write!(
                f,
                "invalid probe path {path:?}: it must start with '/', not end with '/', \
                 contain no route pattern characters and be distinct from the other probes"
            ),
        }
    }
}

impl Error for BuildError {}
