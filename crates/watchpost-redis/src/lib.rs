//! Redis-backed shared state for [watchpost](https://docs.rs/watchpost):
//! when a service runs as several replicas, they send one message per
//! alert and one firing/resolved pair per incident, not one per replica,
//! and share one rate-limit budget per client.
//!
//! # Start here
//!
//! One line, on the [`Watchpost`](watchpost::Watchpost) handle:
//!
//! ```no_run
//! use watchpost::Watchpost;
//! use watchpost_redis::RedisStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let wp = Watchpost::from_env()?
//!     .shared(RedisStore::open(&std::env::var("REDIS_URL")?)?) // every replica, the same URL and prefix
//!     .build()?;
//! let limiter = wp.rate_limiter("10/min".parse()?); // ten a minute in total, across replicas
//! # let _ = limiter; Ok(()) }
//! ```
//!
//! - [`RedisStore`] is the shared state: alert dedupe and incidents through
//!   Redis, and rate limits through a [`RedisRateLimiter`] on the same
//!   connection, which runs on watchpost's thread (so it serves every
//!   runtime alike: actix-web runs one per worker).
//! - If Redis is down, nothing fails and no alert is lost: alerts are
//!   deduplicated in the process until Redis is back, rate limits allow
//!   every request (or, with [`fail_closed`](RedisStoreBuilder::fail_closed),
//!   reject them), one warning is logged when Redis goes and one line when
//!   it returns, and the handle raises one "Shared state unavailable"
//!   incident, resolved when Redis is back.
//! - Keys are namespaced by a [prefix](RedisStoreBuilder::prefix);
//!   neither logs, errors nor `Debug` output show the URL's password.
//!
//! The store never connects in its constructor: an application starts
//! even when Redis is down. For the application's own Redis health, use
//! `watchpost::checks::RedisCheck` (core feature `redis`).
//!
//! Without a `Watchpost`, give the store to an
//! [`AlerterBuilder::store`](watchpost::alert::AlerterBuilder::store) and a
//! [`RedisRateLimiter`] to
//! [`RateLimiter::store`](watchpost::ratelimit::RateLimiter::store), each
//! with an [`on_change`](RedisStoreBuilder::on_change) callback for your
//! own alert; their connections then run on the runtime of their first
//! command.
//!
//! # Feature flags
//!
//! None.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod conn;
mod keys;
mod outbox;
mod ratelimit;
mod store;

pub use conn::Availability;
pub use ratelimit::{RedisRateLimiter, RedisRateLimiterBuilder};
pub use store::{BuildError, RedisStore, RedisStoreBuilder};
