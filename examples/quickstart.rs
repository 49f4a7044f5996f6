//! Run with: cargo run --example quickstart
//!
//! The first watchpost program: an axum service whose health probes tell the
//! truth.
//!
//! - `PORT`: listen on 127.0.0.1:PORT (default 3000).
//! - `UPSTREAM_URL`: adds a readiness check named `upstream` that GETs this
//!   URL. Point it at a closed port and `/readyz` answers 503 while `/livez`
//!   stays 200; the body never shows the address.
//! - `REDIS_URL`: dedupe, incidents and rate limits shared through Redis
//!   (key prefix `WATCHPOST_REDIS_PREFIX`, default `watchpost`): two
//!   quickstarts send one message for the same panic and give a client one
//!   `RATE_LIMIT` between them. Redis down: requests still pass, alerts
//!   still go out, and one "Shared state unavailable" alert says so.
//! - `DATABASE_URL`: adds a readiness check named `postgres`: a query
//!   through an sqlx pool (connected lazily, so the service starts while
//!   Postgres is down, and `/readyz/postgres` answers 503 until it is up).
//! - `RATE_LIMIT`: the per-client-IP quota (default `120/min`; also `10/s`,
//!   `1000/hour`, `5/min burst 10`). Over it: 429 with `Retry-After`. The
//!   probes are never limited. Behind a proxy on this host, the client is
//!   the forwarded address (a forged leftmost `X-Forwarded-For` is ignored).
//! - `TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID` (and `WATCHPOST_TELEGRAM_API_URL`,
//!   `WATCHPOST_WEBHOOK_URL`, `WATCHPOST_WEBHOOK_FORMAT`, `WATCHPOST_SENTRY_DSN`,
//!   `WATCHPOST_SERVICE`, `WATCHPOST_ENV`): where alerts go; nothing set,
//!   they go to the log.
//!   Panics are reported (the hook is installed), a readiness check that goes
//!   down fires an incident and resolves it when it comes back.
//! - `GET /panic` panics inside the handler: the client gets a 500, one alert
//!   goes out (more of the same send nothing new), and serving goes on.
//! - `GET /error` answers 500. The HTTP monitor watches every route: when
//!   5% or more of at least 20 requests in the last minute answer 5xx, one
//!   incident fires (a burst of `/error` does it), and it resolves after a
//!   calm minute. Requests slower than a second are logged.
//!
//! Ctrl-C or SIGTERM: readiness answers 503 at once, then the server drains
//! for two seconds, pending alerts are flushed, and it exits 0.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::{http::StatusCode, routing::get, Router};
use watchpost::alert::{Alert, AlerterBuilder, WeakAlerter};
use watchpost::checks::{HttpCheck, PostgresCheck};
use watchpost::health::HealthChecks;
use watchpost::monitor::HttpMonitor;
use watchpost::ratelimit::{Quota, RateLimiter};
use watchpost_axum::{CatchPanicLayer, HttpMonitorLayer, RateLimitLayer};
use watchpost_redis::{Availability, RedisRateLimiter, RedisStore};

#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Failing checks are logged here (never in the HTTP body by default).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {value:?}"))?,
        Err(_) => 3000,
    };

    // Alerts: Telegram and webhooks from the environment, the log if none.
    // Deduplicated, delivered by their own thread; never block a request.
    let mut alerts = AlerterBuilder::from_env()?;
    // With REDIS_URL, replicas share dedupe and incidents (one message per
    // alert, not one per replica) and rate limits (below). Redis down:
    // each replica dedupes alone, requests are allowed, and one "shared
    // state unavailable" incident says so.
    let weak: Arc<OnceLock<WeakAlerter>> = Arc::default();
    let redis = non_empty_var("REDIS_URL").map(|url| {
        let prefix = non_empty_var("WATCHPOST_REDIS_PREFIX").unwrap_or_else(|| "watchpost".into());
        (url.trim().to_owned(), prefix.trim().to_owned())
    });
    if let Some((url, prefix)) = &redis {
        let store = RedisStore::builder(url)
            .prefix(prefix)
            .on_change(shared_state_alert(weak.clone()))
            .build()
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        alerts = alerts.store(Arc::new(store));
    }
    let alerter = alerts.build()?;
    let _ = weak.set(alerter.downgrade());
    // A panic anywhere is reported before the process dies.
    watchpost::panic::install(&alerter);

    // Readiness checks test what the service needs to serve traffic: real
    // round trips to its dependencies, run concurrently, each under a 2 s
    // timeout, cached for 1 s so probes can't hammer them. A check that goes
    // down fires an incident; coming back resolves it.
    let mut health = HealthChecks::builder().alert_on_failure(alerter.clone());
    if let Some(url) = std::env::var("UPSTREAM_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        let check = HttpCheck::get(&url).map_err(|e| format!("UPSTREAM_URL: {e}"))?;
        health = health.readiness("upstream", check);
    }
    if let Some(url) = non_empty_var("DATABASE_URL") {
        // The pool the handlers would use; the check goes through it.
        let url = url.trim();
        let invalid = "DATABASE_URL: expected a postgres:// or postgresql:// URL";
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid.into());
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(url)
            .map_err(|_| invalid)?;
        health = health.readiness("postgres", PostgresCheck::new(pool));
    }
    let health = health.build()?;

    // Per-client-IP rate limiting; forwarding headers count only from
    // loopback and private addresses (your own proxies).
    let quota: Quota = std::env::var("RATE_LIMIT")
        .unwrap_or_else(|_| "120/min".to_owned())
        .parse()
        .map_err(|e| format!("RATE_LIMIT: {e}"))?;
    let mut limiter = RateLimiter::per_ip(quota).exempt_health(&health);
    if let Some((url, prefix)) = &redis {
        // One budget per client across every replica.
        let shared = RedisRateLimiter::builder(url, quota)
            .prefix(prefix)
            .on_change(shared_state_alert(weak.clone()))
            .build()
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        limiter = limiter.store(shared);
    }

    // The 5xx rate and slow requests, per matched route: one incident when
    // 5% of the last minute's requests (20 at least) fail.
    let monitor = HttpMonitor::new(&alerter)?;

    let app = Router::new()
        .route("/", get(|| async { "Hello from watchpost!\n" }))
        .route("/panic", get(panic_handler))
        .route("/error", get(error_handler))
        .layer(CatchPanicLayer::new()) // a handler panic: 500, and serving goes on
        .layer(HttpMonitorLayer::new(monitor)) // counts the routes above, panics included
        .merge(watchpost_axum::routes(health.clone())) // /livez /readyz /healthz: not counted
        .layer(RateLimitLayer::new(limiter));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("listening on {base}");
    for path in [
        "/",
        "/livez",
        "/readyz",
        "/healthz",
        "/readyz?verbose",
        "/panic",
        "/error",
    ] {
        println!("  {base}{path}");
    }
    let sinks: Vec<&str> = alerter.sink_names().collect();
    println!("alerts go to: {}", sinks.join(", "));

    // On Ctrl-C/SIGTERM: readiness turns 503, the load balancer drains us,
    // then in-flight requests finish and we exit.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(health.shutdown_signal(Duration::from_secs(2)))
    .await?;

    // Deliver what is still queued (bounded: a dead sink can't hold us).
    let flushed =
        tokio::task::spawn_blocking(move || alerter.flush(Duration::from_secs(3))).await?;
    if !flushed {
        eprintln!("some alerts were still undelivered at exit");
    }
    println!("shut down cleanly");
    Ok(())
}

/// Fires one "shared state unavailable" incident while Redis is away (the
/// alert store and the rate limiter both report to it), resolved when it
/// is back. A weak handle: the alerter holds the store, which holds this.
fn shared_state_alert(
    alerter: Arc<OnceLock<WeakAlerter>>,
) -> impl Fn(Availability) + Send + Sync + 'static {
    move |change| {
        let Some(alerter) = alerter.get().and_then(WeakAlerter::upgrade) else {
            return;
        };
        match change {
            Availability::Unavailable => alerter.fire(
                "watchpost-redis",
                Alert::warning("Shared state unavailable").detail(
                    "Redis is unreachable: alerts are deduplicated per replica, \
                     and rate limits are not enforced until it is back",
                ),
            ),
            _ => alerter.resolve("watchpost-redis"),
        }
    }
}

/// An environment variable, if set to something other than blanks.
fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A demonstration of the error-rate alert: always 500.
async fn error_handler() -> (StatusCode, &'static str) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "demo error from GET /error\n",
    )
}

/// A demonstration of the panic alert.
async fn panic_handler() -> &'static str {
    panic!("demo panic from GET /panic")
}
