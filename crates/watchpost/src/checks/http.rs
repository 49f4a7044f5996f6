use std::error::Error;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use crate::health::{Check, CheckResult};

/// Default most body bytes read when looking for a keyword.
const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Passes when a `GET` (or `HEAD`) answers with an expected status (default
/// 2xx) and, optionally, a body containing a keyword. The observed value is
/// the response time in milliseconds.
///
/// All `HttpCheck`s share one `reqwest::Client` (one connection pool) unless
/// given the application's own with [`client`](Self::client). Redirects are
/// followed (up to 10). At most [`max_body_bytes`](Self::max_body_bytes)
/// of the body are read.
///
/// Failure output never contains the URL (it may hold a secret); `Debug`
/// shows only its scheme and host.
///
/// ```
/// use std::time::Duration;
/// use watchpost::checks::HttpCheck;
///
/// let check = HttpCheck::get("https://api.stripe.com/healthcheck")?
///     .expect_status(200..300)
///     .body_contains("ok")
///     .timeout(Duration::from_secs(3));
/// # Ok::<(), watchpost::checks::HttpCheckError>(())
/// ```
#[derive(Clone)]
pub struct HttpCheck {
    client: Option<reqwest::Client>,
    method: reqwest::Method,
    url: reqwest::Url,
    expected: (u16, u16),
    keyword: Option<String>,
    max_body: usize,
    timeout: Duration,
}

impl fmt::Debug for HttpCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCheck")
            .field("method", &self.method)
            .field("scheme", &self.url.scheme())
            .field("host", &self.url.host_str())
            .field("expected", &self.expected)
            .field("keyword", &self.keyword)
            .field("max_body", &self.max_body)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpCheck {
    /// A `GET` check of `url`.
    ///
    /// # Errors
    ///
    /// The URL doesn't parse or isn't `http`/`https`.
    pub fn get(url: &str) -> Result<Self, HttpCheckError> {
        Self::new(reqwest::Method::GET, url)
    }

    /// A `HEAD` check of `url` (status only; a body keyword is ignored).
    ///
    /// # Errors
    ///
    /// The URL doesn't parse or isn't `http`/`https`.
    pub fn head(url: &str) -> Result<Self, HttpCheckError> {
        Self::new(reqwest::Method::HEAD, url)
    }

    fn new(method: reqwest::Method, url: &str) -> Result<Self, HttpCheckError> {
        let url = reqwest::Url::parse(url.trim())
            .map_err(|e| HttpCheckError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpCheckError::UnsupportedScheme(url.scheme().to_owned()));
        }
        Ok(Self {
            client: None,
            method,
            url,
            expected: (200, 299),
            keyword: None,
            max_body: DEFAULT_MAX_BODY,
            timeout: Duration::from_secs(2),
        })
    }

    /// Uses this client (the application's, with its TLS and proxy settings).
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The statuses that pass (default `200..=299`).
    #[must_use]
    pub fn expect_status(mut self, range: impl RangeBounds<u16>) -> Self {
        let lo = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_sub(1),
            Bound::Unbounded => u16::MAX,
        };
        self.expected = (lo, hi);
        self
    }

    /// The body must contain this text within the first
    /// [`max_body_bytes`](Self::max_body_bytes).
    #[must_use]
    pub fn body_contains(mut self, keyword: impl Into<String>) -> Self {
        self.keyword = Some(keyword.into());
        self
    }

    /// Most body bytes read (default 64 KiB).
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// The whole request's timeout (default 2 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn run(&self) -> Result<(), String> {
        let client = match &self.client {
            Some(client) => client,
            None => shared_client()?,
        };
        let mut response = client
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status().as_u16();
        if status < self.expected.0 || status > self.expected.1 {
            return Err(format!("unexpected status {status}"));
        }
        let Some(keyword) = self
            .keyword
            .as_deref()
            .filter(|_| self.method != reqwest::Method::HEAD)
        else {
            return Ok(());
        };
        let mut body = Vec::new();
        while body.len() < self.max_body {
            match response.chunk().await.map_err(describe)? {
                Some(chunk) => {
                    let room = self.max_body - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if contains(&body, keyword.as_bytes()) {
                        return Ok(());
                    }
                }
                None => break,
            }
        }
        if contains(&body, keyword.as_bytes()) {
            Ok(())
        } else {
            Err(format!(
                "body does not contain {keyword:?} (read {} bytes)",
                body.len()
            ))
        }
    }
}

impl Check for HttpCheck {
    /// `system`.
    fn component_type(&self) -> &str {
        "system"
    }

    async fn check(&self) -> CheckResult {
        let started = Instant::now();
        match self.run().await {
            Ok(()) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                CheckResult::pass().observed((ms * 1000.0).round() / 1000.0, "ms")
            }
            Err(output) => CheckResult::fail(output),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A reqwest error as text, without the URL.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    if error.is_timeout() {
        return "request timed out".to_owned();
    }
    error_chain(&error)
}

fn shared_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("watchpost-health/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// An [`HttpCheck`] URL that can't be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpCheckError {
    /// The URL doesn't parse.
    InvalidUrl(String),
    /// The URL's scheme isn't `http` or `https`.
    UnsupportedScheme(String),
}

impl fmt::Display for HttpCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpCheckError::InvalidUrl(why) => write!(f, "invalid health check URL: {why}"),
            HttpCheckError::UnsupportedScheme(scheme) => {
                write!(
                    f,
                    "unsupported health check URL scheme {scheme:?}: expected http or https"
                )
            }
        }
    }
}

impl Error for HttpCheckError {}

/// Formats an error with its chain of sources: `a: b: c`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::health::Status;

    /// Serves `response` (raw HTTP) to every connection; `None` accepts and
    /// never answers. Counts the body bytes actually written.
    async fn serve(response: Option<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/health?key=s3cret",
            listener.local_addr().unwrap()
        );
        let written = Arc::new(AtomicUsize::new(0));
        let counter = written.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let response = response.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let _ = conn.read(&mut buf).await;
                    match response {
                        Some(bytes) => {
                            for chunk in bytes.chunks(8192) {
                                if conn.write_all(chunk).await.is_err() {
                                    return;
                                }
                                counter.fetch_add(chunk.len(), Ordering::SeqCst);
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        (url, written)
    }

    fn http(status: &str, body: &str) -> Option<Vec<u8>> {
        Some(
            format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    #[tokio::test]
    async fn passes_on_expected_status_and_keyword() {
        let (url, _) = serve(http("200 OK", r#"{"status":"ok"}"#)).await;
        let r = HttpCheck::get(&url)
            .unwrap()
            .body_contains("ok")
            .check()
            .await;
        assert_eq!(r.status(), Status::Pass, "{r:?}");
        assert_eq!(r.observed_unit(), Some("ms"));
    }

    #[tokio::test]
    async fn unexpected_status_fails() {
        let (url, _) = serve(http("500 Internal Server Error", "oops")).await;
        let r = HttpCheck::get(&url).unwrap().check().await;
        assert_eq!(
            (r.status(), r.output()),
            (Status::Fail, Some("unexpected status 500"))
        );
        let r = HttpCheck::get(&url)
            .unwrap()
            .expect_status(500..=599)
            .check()
            .await;
        assert_eq!(r.status(), Status::Pass);
        let (url, _) = serve(http("204 No Content", "")).await;
        let r = HttpCheck::get(&url)
            .unwrap()
            .expect_status(200..204)
            .check()
            .await;
        assert_eq!(r.status(), Status::Fail);
    }

    #[tokio::test]
    async fn missing_keyword_fails() {
        let (url, _) = serve(http("200 OK", "maintenance")).await;
        let r = HttpCheck::get(&url)
            .unwrap()
            .body_contains("ok")
            .check()
            .await;
        assert_eq!(r.status(), Status::Fail);
        assert!(
            r.output()
                .unwrap()
                .starts_with("body does not contain \"ok\""),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn reads_at_most_max_body_bytes() {
        let body = "a".repeat(4 * 1024 * 1024) + "ok";
        let (url, _) = serve(http("200 OK", &body)).await;
        let r = HttpCheck::get(&url)
            .unwrap()
            .body_contains("ok")
            .max_body_bytes(1024)
            .check()
            .await;
        assert_eq!(r.status(), Status::Fail);
        assert_eq!(
            r.output(),
            Some("body does not contain \"ok\" (read 1024 bytes)")
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (url, _) = serve(None).await;
        let r = HttpCheck::get(&url)
            .unwrap()
            .timeout(Duration::from_millis(200))
            .check()
            .await;
        assert_eq!(
            (r.status(), r.output()),
            (Status::Fail, Some("request timed out"))
        );
    }

    #[tokio::test]
    async fn refused_connection_fails_without_revealing_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/health?key=s3cret");
        let check = HttpCheck::get(&url).unwrap();
        let r = check.check().await;
        assert_eq!(r.status(), Status::Fail);
        let output = r.output().unwrap();
        assert!(
            !output.contains("127.0.0.1") && !output.contains("s3cret"),
            "{output}"
        );
        let debug = format!("{check:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("/health"),
            "{debug}"
        );
    }

    #[test]
    fn bad_urls_are_rejected_up_front() {
        assert!(matches!(
            HttpCheck::get("not a url"),
            Err(HttpCheckError::InvalidUrl(_))
        ));
        assert_eq!(
            HttpCheck::get("ftp://example.com/").unwrap_err(),
            HttpCheckError::UnsupportedScheme("ftp".into())
        );
        assert!(
            HttpCheck::get(" http://example.com/health\n").is_ok(),
            "trimmed"
        );
    }
}
