//! The probes' HTTP behaviour in plain values, so every adapter answers the
//! same request with the same status, headers and body.

use std::borrow::Cow;

use bytes::Bytes;

use super::builder::{Details, Probe};
use super::registry::HealthChecks;

/// Most `?exclude=` names honoured in one request.
const MAX_EXCLUDES: usize = 32;
/// Most query pairs read from one request.
const MAX_QUERY_PAIRS: usize = 64;

/// The parts of an HTTP request the probes look at. Adapters build it from
/// their framework's request type.
///
/// ```
/// use watchpost::health::ProbeRequest;
///
/// let req = ProbeRequest::new("GET", "/readyz")
///     .query(Some("verbose"))
///     .authorization(Some(b"Bearer s3cret"));
/// # let _ = req;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ProbeRequest<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    authorization: Option<&'a [u8]>,
}

impl<'a> ProbeRequest<'a> {
    /// A request with a method (`"GET"`) and a path (`"/readyz"`, no query).
    #[must_use]
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Self {
            method,
            path,
            query: None,
            authorization: None,
        }
    }

    /// The raw query string, without the `?`.
    #[must_use]
    pub fn query(mut self, query: Option<&'a str>) -> Self {
        self.query = query;
        self
    }

    /// The raw `Authorization` header value.
    #[must_use]
    pub fn authorization(mut self, value: Option<&'a [u8]>) -> Self {
        self.authorization = value;
        self
    }
}

/// A complete probe response: status, headers and body, to be translated into
/// the framework's response type as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResponse {
    status: u16,
    content_type: &'static str,
    allow: bool,
    body: Bytes,
}

/// `Content-Type` of probe reports.
pub const HEALTH_JSON: &str = "application/health+json";

impl ProbeResponse {
    fn json(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type,
            allow: false,
            body: body.into(),
        }
    }

    fn not_found() -> Self {
        Self::json(404, "application/json", &br#"{"error":"not found"}"#[..])
    }

    fn method_not_allowed() -> Self {
        Self {
            allow: true,
            ..Self::json(
                405,
                "application/json",
                &br#"{"error":"method not allowed"}"#[..],
            )
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers to send, every one of them: `Content-Type`,
    /// `Cache-Control: no-store` (probes must never be answered from a CDN or
    /// proxy cache) and, on 405, `Allow`.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
        [
            Some(("content-type", self.content_type)),
            Some(("cache-control", "no-store")),
            self.allow.then_some(("allow", "GET, HEAD")),
        ]
        .into_iter()
        .flatten()
    }

    /// The body (empty for `HEAD`).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> Bytes {
        self.body
    }
}

/// What a path asks for.
enum Route<'a> {
    Probe(Probe),
    Check(Probe, Cow<'a, str>),
}

impl HealthChecks {
    /// Whether `path` is one of the probe paths (`/livez`, `/readyz/db`, …).
    pub fn is_probe_path(&self, path: &str) -> bool {
        self.route(path).is_some()
    }

    fn route<'a>(&self, path: &'a str) -> Option<Route<'a>> {
        let paths = &self.inner.paths;
        [
            (Probe::Liveness, &paths.livez),
            (Probe::Readiness, &paths.readyz),
            (Probe::Health, &paths.healthz),
        ]
        .into_iter()
        .find_map(|(probe, base)| {
            let rest = path.strip_prefix(&**base)?;
            if rest.is_empty() {
                return Some(Route::Probe(probe));
            }
            let name = rest.strip_prefix('/')?;
            if name.is_empty() || name.contains('/') {
                return None;
            }
            let name = percent_encoding::percent_decode_str(name)
                .decode_utf8()
                .ok()?;
            Some(Route::Check(probe, name))
        })
    }

    /// Answers a probe request: the whole HTTP behaviour of the probes, that
    /// every adapter forwards to.
    ///
    /// - `GET`/`HEAD` on the liveness, readiness and health paths run that
    ///   probe's checks; `/<probe>/<name>` runs one check (404 if the probe
    ///   has no check of that name).
    /// - `?verbose` adds each check's time, duration and observed value;
    ///   `?exclude=<name>` (repeatable) leaves checks out.
    /// - Failing checks' error text appears only as the
    ///   [`Details`](super::Details) policy allows.
    /// - 200 for pass and warn, 503 for fail, 404 for an unknown path or check,
    ///   405 for other methods; every response carries `Cache-Control: no-store`.
    ///
    /// ```
    /// use watchpost::checks::fn_check;
    /// use watchpost::health::{HealthChecks, ProbeRequest};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let health = HealthChecks::builder()
    ///     .readiness("db", fn_check(|| async { Err::<(), _>("db.internal:5432: refused") }))
    ///     .build()?;
    /// let res = health.respond(ProbeRequest::new("GET", "/readyz")).await;
    /// assert_eq!(res.status(), 503);
    /// assert!(!String::from_utf8_lossy(res.body()).contains("db.internal"));
    /// # Ok(()) }
    /// ```
    pub async fn respond(&self, req: ProbeRequest<'_>) -> ProbeResponse {
        let Some(route) = self.route(req.path) else {
            return ProbeResponse::not_found();
        };
        let head = match req.method {
            "GET" => false,
            "HEAD" => true,
            _ => return ProbeResponse::method_not_allowed(),
        };

        let mut verbose = false;
        let mut exclude: Vec<Cow<'_, str>> = Vec::new();
        let mut query_token: Option<Cow<'_, str>> = None;
        let pairs = form_urlencoded::parse(req.query.unwrap_or("").as_bytes());
        for (key, value) in pairs.take(MAX_QUERY_PAIRS) {
            match &*key {
                "verbose" => verbose = !matches!(&*value, "0" | "false"),
                "exclude" if exclude.len() < MAX_EXCLUDES => exclude.push(value),
                "token" => query_token = Some(value),
                _ => {}
            }
        }
        let details = match &self.inner.details {
            Details::Never => false,
            Details::Always => true,
            Details::WithToken(token) => {
                bearer(req.authorization).is_some_and(|t| token.matches(t))
                    || query_token.is_some_and(|t| token.matches(t.as_bytes()))
            }
        };

        let report = match route {
            Route::Probe(probe) => self.evaluate_excluding(probe, &exclude).await,
            Route::Check(probe, name) => match self.evaluate_check(probe, &name).await {
                Some(report) => report,
                None => return ProbeResponse::not_found(),
            },
        };
        let body = if head {
            Bytes::new()
        } else {
            Bytes::from(report.to_json(verbose, details))
        };
        ProbeResponse::json(report.http_status(), HEALTH_JSON, body)
    }
}

/// The credentials of an `Authorization: Bearer <token>` header.
fn bearer(value: Option<&[u8]>) -> Option<&[u8]> {
    let value = value?;
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(token.trim_ascii())
}
