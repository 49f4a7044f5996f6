//! Run with: cargo run --example actix_quickstart
//!
//! The quickstart (`examples/quickstart.rs`) in actix-web: the same
//! environment, the same routes and the same answers, status, headers and
//! body. An actix-web service whose health probes tell the truth.
//!
//! - `PORT`: listen on 127.0.0.1:PORT (default 3000).
//! - `UPSTREAM_URL`: adds a readiness check named `upstream` that GETs this
//!   URL. Point it at a closed port and `/readyz` answers 503 while `/livez`
//!   stays 200; the body never shows the address.
//! - `REDIS_URL`: dedupe, incidents and rate limits shared through Redis
//!   (key prefix `WATCHPOST_REDIS_PREFIX`, default `watchpost`): two
//!   quickstarts send one message for the same panic and give a client one
//!   `RATE_LIMIT` between them (an axum and an actix quickstart too: the
//!   keys are the same). Redis down: requests still pass, alerts still go
//!   out, and one "Shared state unavailable" alert says so.
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

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::http::header::{self, ContentType};
use actix_web::{guard, web, App, FromRequest, Handler, HttpResponse, HttpServer, Responder};
use watchpost::alert::{Alert, AlerterBuilder, WeakAlerter};
use watchpost::checks::{HttpCheck, PostgresCheck};
use watchpost::health::HealthChecks;
use watchpost::monitor::HttpMonitor;
use watchpost::ratelimit::{Quota, RateLimiter};
use watchpost_actix::{CatchPanic, RateLimit};
use watchpost_redis::{Availability, RedisRateLimiter, RedisStore};

#[actix_web::main]
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
    // Deduplicated, delivered by their own thread (not one of actix's
    // runtimes); never block a request.
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
    if let Some(url) = non_empty_var("UPSTREAM_URL") {
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

    // actix-web builds one `App` per worker thread, by calling the closure
    // below once per worker: the limiter, monitor and checks are built once,
    // above, and each `App` gets a clone sharing their state (one budget per
    // client, one error rate for the whole service).
    let rate_limit = RateLimit::new(limiter);
    let probes = health.clone();
    let app = move || {
        // Each of our routes is watched by the monitor and guarded against
        // panics (in actix the last `wrap` is the outermost: the monitor
        // counts the 500 of a caught panic). The probes and unknown paths
        // (404) are not counted: a probe's 503 is a signal to the load
        // balancer, not a server error.
        let monitored = |route: actix_web::Resource| {
            route
                .wrap(CatchPanic::new()) // a handler panic: 500, and serving goes on
                .wrap(watchpost_actix::HttpMonitor::new(monitor.clone()))
        };
        App::new()
            .service(monitored(get_route("/", hello)))
            .service(monitored(get_route("/panic", panic_handler)))
            .service(monitored(get_route("/error", error_handler)))
            .configure(watchpost_actix::configure(probes.clone())) // /livez /readyz /healthz
            .wrap(rate_limit.clone()) // every route; the probes are exempt
    };

    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
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
    // then in-flight requests finish and we exit. actix's own signal
    // handling would stop without the drain delay, so it is off and the
    // health checks say when to stop.
    let server = HttpServer::new(app)
        .disable_signals()
        .listen(listener)?
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        health.shutdown_signal(Duration::from_secs(2)).await;
        handle.stop(true).await; // graceful: in-flight requests finish
    });
    server.await?;

    // Deliver what is still queued (bounded: a dead sink can't hold us).
    let flushed =
        actix_web::rt::task::spawn_blocking(move || alerter.flush(Duration::from_secs(3))).await?;
    if !flushed {
        eprintln!("some alerts were still undelivered at exit");
    }
    println!("shut down cleanly");
    Ok(())
}

/// A route answering GET and HEAD (without the body), and other methods
/// with 405 and `Allow: GET,HEAD`: what axum's `get` does, so that both
/// quickstarts answer alike (actix's `web::get()` alone matches GET only).
fn get_route<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(handler),
        )
        .default_service(web::to(|| async {
            HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "GET,HEAD"))
                .finish()
        }))
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

/// The greeting.
async fn hello() -> &'static str {
    "Hello from watchpost!\n"
}

/// A demonstration of the error-rate alert: always 500.
async fn error_handler() -> HttpResponse {
    HttpResponse::InternalServerError()
        .content_type(ContentType::plaintext())
        .body("demo error from GET /error\n")
}

/// A demonstration of the panic alert.
async fn panic_handler() -> &'static str {
    panic!("demo panic from GET /panic")
}
