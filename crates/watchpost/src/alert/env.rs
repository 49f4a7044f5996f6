//! Configuration from the environment, and configuration errors.

use std::ffi::OsString;
use std::fmt;

use super::alerter::AlerterBuilder;

/// A setting or environment variable that can't be used. Its message names
/// the variable and never contains a secret value.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value that can't be used.
    Invalid {
        /// The variable or setting (`TELEGRAM_CHAT_ID`, `dedupe_window`).
        name: String,
        /// What was expected.
        reason: String,
    },
    /// A variable that needs another one to be set.
    Missing {
        /// The variable that is missing.
        name: &'static str,
        /// The variable that needs it.
        needed_by: &'static str,
    },
    /// A variable asks for a sink this build of watchpost leaves out.
    FeatureDisabled {
        /// The variable.
        name: &'static str,
        /// The cargo feature that provides the sink.
        feature: &'static str,
    },
    /// The delivery thread could not start.
    Spawn(std::io::Error),
    /// The health checks' configuration (a
    /// [`Watchpost`](crate::Watchpost) builds them).
    Health(crate::health::BuildError),
}

impl ConfigError {
    /// An invalid value for `name`. `reason` says what was expected; it
    /// must not quote a secret.
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// The variable or setting at fault, if the error is about one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Invalid { name, .. } => Some(name),
            Self::Missing { name, .. } | Self::FeatureDisabled { name, .. } => Some(name),
            Self::Spawn(_) | Self::Health(_) => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { name, reason } => write!(f, "invalid {name}: {reason}"),
            Self::Missing { name, needed_by } => {
                write!(f, "{needed_by} is set but {name} is not: set both")
            }
            Self::FeatureDisabled { name, feature } => write!(
                f,
                "{name} is set but watchpost was built without its `{feature}` feature"
            ),
            Self::Spawn(_) => f.write_str("cannot start watchpost's thread"),
            Self::Health(e) => write!(f, "invalid health checks: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn(e) => Some(e),
            Self::Health(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads one variable: trimmed of whitespace and newlines, empty as unset.
fn read(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    match lookup(name) {
        None => Ok(None),
        Some(value) => {
            let value = value
                .into_string()
                .map_err(|_| ConfigError::invalid(name, "not valid UTF-8"))?;
            let value = value.trim();
            Ok((!value.is_empty()).then(|| value.to_owned()))
        }
    }
}

impl AlerterBuilder {
    /// A builder configured from the environment; change anything before
    /// [`build`](Self::build).
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `TELEGRAM_BOT_TOKEN`, `TELEGRAM_CHAT_ID` | the Telegram sink (both or neither) |
    /// | `WATCHPOST_TELEGRAM_API_URL` | Bot API base URL (default `https://api.telegram.org`) |
    /// | `WATCHPOST_TELEGRAM_THREAD_ID` | forum topic to post in (`message_thread_id`) |
    /// | `WATCHPOST_WEBHOOK_URL` | the webhook sink |
    /// | `WATCHPOST_WEBHOOK_FORMAT` | `json` (Alertmanager), `slack` or `discord`; default from the URL's host, else `json` |
    /// | `WATCHPOST_SENTRY_DSN` | the Sentry sink (Sentry, GlitchTip): the project's DSN; needs the `sentry` feature |
    /// | `WATCHPOST_SERVICE` | the service name in messages (default: the executable's name) |
    /// | `WATCHPOST_ENV` | the environment (`production`) |
    /// | `WATCHPOST_VERSION` | the running version |
    /// | `WATCHPOST_HOST` | the host name (default: the machine's) |
    /// | `WATCHPOST_ALERT_MAX_AGE` | how long an alert is kept while a sink is down before it is given up and reported (default `10m`) |
    ///
    /// Values are trimmed, so a token pasted with a trailing newline works;
    /// an empty variable counts as unset. No sink set: the log sink.
    ///
    /// # Errors
    ///
    /// A value that can't be used, naming the variable: a chat id that is
    /// neither a number nor `@channel`, a URL or DSN that doesn't parse, an
    /// unknown webhook format, `TELEGRAM_BOT_TOKEN` without
    /// `TELEGRAM_CHAT_ID` (or the reverse). A variable asking for a sink
    /// whose cargo feature is off ([`ConfigError::FeatureDisabled`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use watchpost::alert::AlerterBuilder;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let alerter = AlerterBuilder::from_env()?.version("1.4.2").build()?;
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Like [`from_env`](Self::from_env), with the variables read through
    /// `lookup` (a config file, a secrets manager, a test's map).
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    ///
    /// # Examples
    ///
    /// ```
    /// use watchpost::alert::AlerterBuilder;
    ///
    /// let err = AlerterBuilder::from_lookup(|name| match name {
    ///     "TELEGRAM_BOT_TOKEN" => Some("123:abc".into()),
    ///     _ => None,
    /// })
    /// .unwrap_err();
    /// assert_eq!(err.to_string(), "TELEGRAM_BOT_TOKEN is set but TELEGRAM_CHAT_ID is not: set both");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, ConfigError> {
        let lookup: &dyn Fn(&str) -> Option<OsString> = &lookup;
        let mut builder = Self::new();
        if let Some(name) = read(lookup, "WATCHPOST_SERVICE")? {
            builder = builder.service(name);
        }
        if let Some(env) = read(lookup, "WATCHPOST_ENV")? {
            builder = builder.environment(env);
        }
        if let Some(version) = read(lookup, "WATCHPOST_VERSION")? {
            builder = builder.version(version);
        }
        if let Some(host) = read(lookup, "WATCHPOST_HOST")? {
            builder = builder.host(host);
        }
        if let Some(age) = read(lookup, "WATCHPOST_ALERT_MAX_AGE")? {
            let age = humantime::parse_duration(age.trim())
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::invalid(
                        "WATCHPOST_ALERT_MAX_AGE",
                        "expected a duration such as 10m or 1h",
                    )
                })?;
            builder = builder.max_age(age);
        }
        builder = telegram_from(lookup, builder)?;
        builder = webhook_from(lookup, builder)?;
        builder = sentry_from(lookup, builder)?;
        Ok(builder)
    }
}

fn telegram_from(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    builder: AlerterBuilder,
) -> Result<AlerterBuilder, ConfigError> {
    let token = read(lookup, "TELEGRAM_BOT_TOKEN")?;
    let chat = read(lookup, "TELEGRAM_CHAT_ID")?;
    let (token, chat) = match (token, chat) {
        (None, None) => return Ok(builder),
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                name: "TELEGRAM_CHAT_ID",
                needed_by: "TELEGRAM_BOT_TOKEN",
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                name: "TELEGRAM_BOT_TOKEN",
                needed_by: "TELEGRAM_CHAT_ID",
            })
        }
        (Some(token), Some(chat)) => (token, chat),
    };
    let api_url = read(lookup, "WATCHPOST_TELEGRAM_API_URL")?;
    let thread = read(lookup, "WATCHPOST_TELEGRAM_THREAD_ID")?
        .map(|t| {
            t.parse::<i64>().map_err(|_| {
                ConfigError::invalid("WATCHPOST_TELEGRAM_THREAD_ID", "expected an integer")
            })
        })
        .transpose()?;
    #[cfg(feature = "telegram")]
    {
        let mut sink = super::sinks::TelegramSink::builder(token, chat);
        if let Some(url) = api_url {
            sink = sink.api_url(url);
        }
        if let Some(thread) = thread {
            sink = sink.thread_id(thread);
        }
        Ok(builder.sink(sink.build()?))
    }
    #[cfg(not(feature = "telegram"))]
    {
        let _ = (token, chat, api_url, thread, builder);
        Err(ConfigError::FeatureDisabled {
            name: "TELEGRAM_BOT_TOKEN",
            feature: "telegram",
        })
    }
}

fn webhook_from(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    builder: AlerterBuilder,
) -> Result<AlerterBuilder, ConfigError> {
    let Some(url) = read(lookup, "WATCHPOST_WEBHOOK_URL")? else {
        if read(lookup, "WATCHPOST_WEBHOOK_FORMAT")?.is_some() {
            return Err(ConfigError::Missing {
                name: "WATCHPOST_WEBHOOK_URL",
                needed_by: "WATCHPOST_WEBHOOK_FORMAT",
            });
        }
        return Ok(builder);
    };
    let format = read(lookup, "WATCHPOST_WEBHOOK_FORMAT")?;
    #[cfg(feature = "webhook")]
    {
        use super::sinks::{WebhookFormat, WebhookSink};
        let format = match format {
            Some(f) => f
                .parse::<WebhookFormat>()
                .map_err(|e| ConfigError::invalid("WATCHPOST_WEBHOOK_FORMAT", e.to_string()))?,
            None => WebhookFormat::infer(&url),
        };
        Ok(builder.sink(WebhookSink::new(url, format)?))
    }
    #[cfg(not(feature = "webhook"))]
    {
        let _ = (url, format, builder);
        Err(ConfigError::FeatureDisabled {
            name: "WATCHPOST_WEBHOOK_URL",
            feature: "webhook",
        })
    }
}

fn sentry_from(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    builder: AlerterBuilder,
) -> Result<AlerterBuilder, ConfigError> {
    let Some(dsn) = read(lookup, "WATCHPOST_SENTRY_DSN")? else {
        return Ok(builder);
    };
    #[cfg(feature = "sentry")]
    {
        Ok(builder.sink(super::sinks::SentrySink::from_dsn_str(&dsn)?))
    }
    #[cfg(not(feature = "sentry"))]
    {
        let _ = (dsn, builder);
        Err(ConfigError::FeatureDisabled {
            name: "WATCHPOST_SENTRY_DSN",
            feature: "sentry",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<AlerterBuilder, ConfigError> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(*v)))
            .collect();
        AlerterBuilder::from_lookup(move |name| map.get(name).cloned())
    }

    #[test]
    fn nothing_set_means_no_sinks_and_defaults() {
        let b = from(&[]).unwrap();
        assert!(b.sinks.is_empty());
        assert!(b.service.environment.is_none());
    }

    #[test]
    fn values_are_trimmed() {
        let b = from(&[
            ("WATCHPOST_SERVICE", "  checkout-api\n"),
            ("WATCHPOST_ENV", "production\r\n"),
            ("WATCHPOST_HOST", "\tweb-1 "),
        ])
        .unwrap();
        assert_eq!(b.service.name, "checkout-api");
        assert_eq!(b.service.environment.as_deref(), Some("production"));
        assert_eq!(b.service.host, "web-1");
    }

    #[test]
    fn the_max_age_is_a_duration() {
        let b = from(&[("WATCHPOST_ALERT_MAX_AGE", " 30m\n")]).unwrap();
        assert_eq!(b.delivery.max_age, std::time::Duration::from_secs(1800));
        for bad in ["soon", "0s", "-5m"] {
            let err = from(&[("WATCHPOST_ALERT_MAX_AGE", bad)]).unwrap_err();
            assert_eq!(err.name(), Some("WATCHPOST_ALERT_MAX_AGE"), "{bad}");
        }
    }

    #[test]
    fn empty_counts_as_unset() {
        let b = from(&[("TELEGRAM_BOT_TOKEN", " \n"), ("TELEGRAM_CHAT_ID", "")]).unwrap();
        assert!(b.sinks.is_empty());
    }

    #[test]
    fn half_a_telegram_config_is_an_error_naming_the_variable() {
        let err = from(&[("TELEGRAM_CHAT_ID", "42")]).unwrap_err();
        assert_eq!(err.name(), Some("TELEGRAM_BOT_TOKEN"));
        let err = from(&[("TELEGRAM_BOT_TOKEN", "1:x")]).unwrap_err();
        assert_eq!(err.name(), Some("TELEGRAM_CHAT_ID"));
        let err = from(&[("WATCHPOST_WEBHOOK_FORMAT", "slack")]).unwrap_err();
        assert_eq!(err.name(), Some("WATCHPOST_WEBHOOK_URL"));
    }

    #[test]
    fn bad_thread_id_names_the_variable() {
        let err = from(&[
            ("TELEGRAM_BOT_TOKEN", "1:x"),
            ("TELEGRAM_CHAT_ID", "42"),
            ("WATCHPOST_TELEGRAM_THREAD_ID", "seven"),
        ])
        .unwrap_err();
        assert_eq!(err.name(), Some("WATCHPOST_TELEGRAM_THREAD_ID"));
    }

    #[cfg(feature = "sentry")]
    #[test]
    fn sentry_dsn_adds_the_sink() {
        let b = from(&[(
            "WATCHPOST_SENTRY_DSN",
            " https://0123456789abcdef@o1.ingest.sentry.io/1\n",
        )])
        .unwrap();
        assert_eq!(b.sinks.len(), 1);
        assert_eq!(b.sinks[0].name(), "sentry");
        assert!(!format!("{b:?}").contains("0123456789abcdef"));
    }

    #[cfg(feature = "sentry")]
    #[test]
    fn bad_sentry_dsn_names_the_variable_without_quoting_it() {
        for bad in [
            "0123456789abcdef",
            "https://o1.ingest.sentry.io/1",
            "https://0123456789abcdef@o1.ingest.sentry.io/",
            "ftp://0123456789abcdef@o1.ingest.sentry.io/1",
        ] {
            let err = from(&[("WATCHPOST_SENTRY_DSN", bad)]).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
            assert_eq!(err.name(), Some("WATCHPOST_SENTRY_DSN"));
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("0123456789abcdef"), "{shown}");
            assert!(!shown.contains("o1.ingest"), "{shown}");
        }
    }

    #[cfg(not(feature = "sentry"))]
    #[test]
    fn sentry_dsn_without_the_feature_is_refused_not_ignored() {
        let err = from(&[("WATCHPOST_SENTRY_DSN", "https://k@o1.ingest.sentry.io/1")]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::FeatureDisabled {
                    name: "WATCHPOST_SENTRY_DSN",
                    feature: "sentry"
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains("https://k@"));
    }
}
