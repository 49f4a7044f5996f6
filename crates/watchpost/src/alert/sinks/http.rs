//! What the HTTP sinks share: one client, and how answers map to
//! [`SinkError`]s. Nothing here ever formats a URL: sink URLs are secrets.

use std::sync::OnceLock;
use std::time::Duration;

use crate::alert::sink::SinkError;

/// Bodies read from an API are cut at this many bytes.
const BODY_LIMIT: usize = 64 * 1024;

/// The client every HTTP sink uses unless given its own: rustls, 10 s
/// timeout, 5 s to connect, no URL in its errors once [`request_error`]
/// has seen them.
pub(crate) fn shared_client() -> Result<reqwest::Client, SinkError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("watchpost/", env!("CARGO_PKG_VERSION")))
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e.without_url())))
        })
        .clone()
        .map_err(SinkError::transient)
}

/// A failed request (no answer): transient, described without the URL.
pub(crate) fn request_error(error: reqwest::Error) -> SinkError {
    let error = error.without_url();
    if error.is_timeout() {
        return SinkError::transient("request timed out");
    }
    if error.is_connect() {
        return SinkError::transient(format!("cannot connect: {}", chain(&error)));
    }
    SinkError::transient(chain(&error))
}

/// An error and its sources, joined by `: ` (reqwest's Display alone says
/// little).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// `Retry-After` as seconds (integer or, as Discord sends, fractional).
/// HTTP dates aren't used by the chat APIs and read as `None`.
pub(crate) fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    seconds(value.trim().parse::<f64>().ok()?)
}

/// A number of seconds from an API as a `Duration`, capped at one hour
/// (a bigger value is a bug on the other side, and `max_age` gives up
/// long before).
pub(crate) fn seconds(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs.min(3600.0)))
}

/// The body, at most [`BODY_LIMIT`] bytes of it, as text.
pub(crate) async fn body_text(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = BODY_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= BODY_LIMIT {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The error for a non-success status. `description` is what the API said
/// (cut to 300 characters); `retry_after` applies to 429.
pub(crate) fn status_error(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    description: &str,
) -> SinkError {
    let description: String = description.trim().chars().take(300).collect();
    let message = if description.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {description}", status.as_u16())
    };
    match status.as_u16() {
        429 => SinkError::rate_limited(retry_after.unwrap_or(Duration::from_secs(1)), message),
        408 | 500..=599 => SinkError::transient(message),
        _ => SinkError::rejected(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::sink::SinkErrorKind;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_reads_integers_and_floats() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(retry_after_header(&h), Some(Duration::from_secs(5)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(retry_after_header(&h), Some(Duration::from_millis(1500)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_header(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-3"));
        assert_eq!(retry_after_header(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("99999999"));
        assert_eq!(retry_after_header(&h), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn statuses_map_to_retry_decisions() {
        use reqwest::StatusCode as S;
        let kind = |s, ra| status_error(s, ra, "x").kind();
        assert_eq!(
            kind(S::TOO_MANY_REQUESTS, Some(Duration::from_secs(3))),
            SinkErrorKind::RateLimited {
                retry_after: Duration::from_secs(3)
            }
        );
        assert_eq!(kind(S::BAD_GATEWAY, None), SinkErrorKind::Transient);
        assert_eq!(kind(S::REQUEST_TIMEOUT, None), SinkErrorKind::Transient);
        assert_eq!(kind(S::BAD_REQUEST, None), SinkErrorKind::Rejected);
        assert_eq!(kind(S::NOT_FOUND, None), SinkErrorKind::Rejected);
        assert_eq!(
            status_error(S::FORBIDDEN, None, "invalid_token").message(),
            "HTTP 403: invalid_token"
        );
    }
}
