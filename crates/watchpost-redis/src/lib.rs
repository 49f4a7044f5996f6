//! Redis-backed shared state for [watchpost](https://docs.rs/watchpost):
//! when a service runs as several replicas, they send one message per
//! alert and one firing/resolved pair per incident, not one per replica,
//! and share one rate-limit budget per client.
//!
//! # Start here
//!
//! - [`RedisStore`] is a [`watchpost::alert::AlertStore`]: give one to each
//!   replica's [`Alerter`](watchpost::alert::Alerter) with
//!   [`AlerterBuilder::store`](watchpost::alert::AlerterBuilder::store), all
//!   pointing at the same Redis (and the same [prefix](RedisStoreBuilder::prefix)).
//! - If Redis is down, nothing fails and no alert is lost: the store
//!   dedupes in the process until Redis is back, logs one warning when it
//!   goes and one line when it returns, and calls your
//!   [`on_change`](RedisStoreBuilder::on_change) callback, where you can
//!   raise a "shared state unavailable" alert (below).
//! - [`RedisRateLimiter`] is a GCRA rate limiter whose budget per key is
//!   shared by every replica (`10/min` means ten requests in total, not
//!   ten per replica), with the in-memory limiter's
//!   [`Decision`](watchpost::ratelimit::Decision) and headers. If Redis is
//!   down it allows every request (or, if configured, rejects them), with
//!   one warning.
//!
//! The store never connects in its constructor: an application starts
//! even when Redis is down. It opens its own connection, on the alert
//! delivery thread, so alerts don't depend on the application's runtime
//! (see [`RedisStore`]). For the application's own Redis health, use
//! `watchpost::checks::RedisCheck` (core feature `redis`).
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::{Arc, OnceLock};
//! use watchpost::alert::{Alert, Alerter, WeakAlerter};
//! use watchpost_redis::{Availability, RedisStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Filled once the alerter exists (the store is built first). A weak
//! // handle: the alerter holds the store, the store must not hold it.
//! let slot: Arc<OnceLock<WeakAlerter>> = Arc::default();
//! let store = RedisStore::builder(&std::env::var("REDIS_URL")?)
//!     .prefix("checkout-api")
//!     .on_change({
//!         let slot = slot.clone();
//!         move |change| {
//!             let Some(alerter) = slot.get().and_then(WeakAlerter::upgrade) else { return };
//!             match change {
//!                 Availability::Unavailable => alerter.fire(
//!                     "watchpost-redis",
//!                     Alert::warning("Shared alert state unavailable")
//!                         .detail("Redis is unreachable: alerts are deduplicated per replica"),
//!                 ),
//!                 Availability::Recovered { .. } => alerter.resolve("watchpost-redis"),
//!                 _ => {}
//!             }
//!         }
//!     })
//!     .build()?;
//!
//! let alerter = Alerter::builder().store(Arc::new(store)).build()?;
//! let _ = slot.set(alerter.downgrade());
//!
//! alerter.send(Alert::error("Payment provider down")); // once across replicas
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! None.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod conn;
mod keys;
mod ratelimit;
mod store;

pub use conn::Availability;
pub use ratelimit::{RedisRateLimiter, RedisRateLimiterBuilder};
pub use store::{BuildError, RedisStore, RedisStoreBuilder};
