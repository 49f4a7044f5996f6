//! tower integration for [watchpost](https://docs.rs/watchpost): health
//! probes, per-IP rate limiting, handler panics and the HTTP monitor for
//! any tower stack (hyper, axum, tonic, …).
//!
//! # Start here
//!
//! - [`WatchpostLayer`] wraps an application in everything a
//!   [`watchpost::Watchpost`] provides, in the right order: its rate limit,
//!   the HTTP monitor, and catching panics.
//! - [`HealthService`] answers `/livez`, `/readyz`, `/healthz`,
//!   `/<probe>/<check>` with exactly the behaviour described in
//!   [`watchpost::health::HealthChecks::respond`].
//! - [`RateLimitLayer`] applies a [`watchpost::ratelimit::RateLimiter`]:
//!   429 with `Retry-After` and the IETF `RateLimit` headers when a client is
//!   over quota, the quota headers on allowed responses.
//! - [`CatchPanicLayer`] turns a panicking handler into a 500 and an alert,
//!   and keeps the server serving (see [`catch_panic`]).
//! - [`MonitorLayer`] feeds a [`watchpost::monitor::HttpMonitor`]: one
//!   incident when the 5xx rate or p95 latency goes wrong, slow requests
//!   logged (see [`monitor`]).
//!
//! # Examples
//!
//! ```
//! use http::{Request, StatusCode};
//! use http_body_util::Empty;
//! use tower::ServiceExt;
//! use watchpost::checks::fn_check;
//! use watchpost::health::HealthChecks;
//! use watchpost_tower::HealthService;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthChecks::builder()
//!     .readiness("db", fn_check(|| async { true }))
//!     .build()?;
//! let res = HealthService::new(health)
//!     .oneshot(Request::get("/readyz").body(Empty::<bytes::Bytes>::new())?)
//!     .await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! # Ok(()) }
//! ```
//!
//! Rate limiting a service (the peer address comes from a `SocketAddr`
//! request extension, which you insert per connection when serving with
//! hyper; axum users take `watchpost_axum::RateLimitLayer`, which reads
//! `ConnectInfo`):
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use watchpost::ratelimit::RateLimiter;
//! use watchpost_tower::RateLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RateLimiter::per_ip("1/min".parse()?);
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("hi"))))
//!     }));
//! let request = || {
//!     let mut req = Request::new(String::new());
//!     req.extensions_mut().insert(SocketAddr::from(([203, 0, 113, 9], 50000)));
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(request()).await?.status(), StatusCode::OK);
//! let limited = svc.oneshot(request()).await?;
//! assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(limited.headers()["retry-after"], "60");
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! This crate has no feature flags of its own.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod catch_panic;
mod health;
mod layers;
pub mod monitor;
mod rate_limit;

pub use catch_panic::{CatchPanic, CatchPanicLayer};
pub use layers::{WatchpostFuture, WatchpostLayer, WatchpostService};
pub use monitor::{Monitor, MonitorFuture, MonitorLayer, NoRoute, RoutePattern};

pub use health::{HealthService, ResponseFuture};
pub use rate_limit::{
    PeerAddr, RateLimit, RateLimitLayer, ResolvedClientIp,
    ResponseFuture as RateLimitResponseFuture, SocketAddrPeer,
};
