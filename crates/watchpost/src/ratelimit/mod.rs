//! Per-client-IP rate limiting that holds behind proxies and under floods.
//!
//! - [`RateLimiter`]: the HTTP policy the adapters apply (client IP through
//!   trusted proxies only, IPv6 grouped by /64, per-route quotas, exempt
//!   paths, 429 with `Retry-After` and the IETF `RateLimit` headers).
//! - [`KeyedRateLimiter`]: GCRA (on governor) for any hashable key, such as
//!   a user id or an API key, with memory that stays bounded on its own.
//! - [`Quota`]: `"60/min"`, `"10/s"`, `"5/min burst 10"`, or built in code.
//! - [`RateLimitStore`]: counts shared by every replica (Redis, with
//!   `watchpost_redis::RedisRateLimiter`), given with
//!   [`RateLimiter::store`].
//!
//! # Memory
//!
//! Nothing runs in the background. Each limiter caps the keys it tracks
//! (by default about 64 MiB of state) and makes room on the insertion path,
//! one shard at a time: keys whose allowance has refilled go first (dropping
//! them loses nothing), then the most idle keys that are not being limited.
//! A flood of a million distinct addresses can't grow memory past the cap.
//!
//! # Examples
//!
//! ```
//! use std::net::IpAddr;
//! use watchpost::ratelimit::{Quota, RateLimiter, RateLimitRequest};
//!
//! let limiter = RateLimiter::per_ip("120/min".parse::<Quota>()?)
//!     .route("/api/chat", "10/min".parse()?) // the endpoint that costs money
//!     .exempt("/healthz");
//!
//! // Behind nginx on the same host: the peer is 127.0.0.1 (trusted), so the
//! // client is the rightmost untrusted X-Forwarded-For entry. A forged
//! // leftmost entry changes nothing.
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse()?);
//! let peer: IpAddr = "127.0.0.1".parse()?;
//! let outcome = limiter
//!     .check_request(&RateLimitRequest::new("POST", "/api/chat", Some(peer), &headers))
//!     .ready() // in memory: decided at once
//!     .ok_or("pending")?;
//! assert_eq!(outcome.client_ip(), Some("203.0.113.9".parse()?));
//! assert_eq!(outcome.decision().map(|d| d.remaining), Some(9));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod key;
mod keyed;
mod limiter;
mod quota;
mod shared;
mod store;

pub use key::{
    key_fn, ClientIpKey, ExtensionKey, FnKey, HeaderKey, Key, KeyExtractor, KeyRequest,
    RateLimitKey,
};
pub use keyed::{Decision, KeyedRateLimiter};
pub use limiter::{BodyFormat, Outcome, RateLimitHeader, RateLimitRequest, RateLimiter};
pub use quota::{Quota, QuotaError};
pub use shared::{DecisionFuture, RateLimitStore, Verdict, VerdictFuture};

#[cfg(test)]
mod tests;
