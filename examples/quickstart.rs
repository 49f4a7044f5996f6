//! Run with: cargo run --example quickstart
//!
//! The first watchpost program: an axum service whose health probes tell the
//! truth.
//!
//! - `PORT`: listen on 127.0.0.1:PORT (default 3000).
//! - `UPSTREAM_URL`: adds a readiness check named `upstream` that GETs this
//!   URL. Point it at a closed port and `/readyz` answers 503 while `/livez`
//!   stays 200; the body never shows the address.
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
use std::time::Duration;

use axum::{http::StatusCode, routing::get, Router};
use watchpost::alert::Alerter;
use watchpost::checks::HttpCheck;
use watchpost::health::HealthChecks;
use watchpost::monitor::HttpMonitor;
use watchpost::ratelimit::{Quota, RateLimiter};
use watchpost_axum::{CatchPanicLayer, HttpMonitorLayer, RateLimitLayer};

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
    let alerter = Alerter::from_env()?;
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
    let health = health.build()?;

    // Per-client-IP rate limiting; forwarding headers count only from
    // loopback and private addresses (your own proxies).
    let quota: Quota = std::env::var("RATE_LIMIT")
        .unwrap_or_else(|_| "120/min".to_owned())
        .parse()
        .map_err(|e| format!("RATE_LIMIT: {e}"))?;
    let limiter = RateLimiter::per_ip(quota).exempt_health(&health);

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
