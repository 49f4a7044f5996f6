//! Run with: cargo run --example actix_quickstart
//!
//! The quickstart (`examples/quickstart.rs`) in actix-web: the same
//! environment, the same routes and the same answers, status, headers and
//! body. An actix-web service whose health probes tell the truth.
//!
//! - `PORT`: listen on 127.0.0.1:PORT (default 3000).
//! - `UPSTREAM_URL`: adds a readiness check named `upstream` that GETs this
//!   URL. Point it at a closed port and `/readyz` answers 503 while `/livez`
//!   stays 200; the body never shows the address. The checks run every
//!   10 s in the background: the upstream going away fires one incident
//!   with no probe request at all, and coming back resolves it.
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
//!   the forwarded address (a forged leftmost `X-Forwarded-For` is ignored);
//!   `WATCHPOST_TRUSTED_PROXIES` says who may set it (`none`: nobody).
//! - `TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID` (and `WATCHPOST_TELEGRAM_API_URL`,
//!   `WATCHPOST_WEBHOOK_URL`, `WATCHPOST_WEBHOOK_FORMAT`, `WATCHPOST_SENTRY_DSN`,
//!   `WATCHPOST_SERVICE`, `WATCHPOST_ENV`): where alerts go; nothing set,
//!   they go to the log.
//! - `GET /panic` panics inside the handler: the client gets a 500, one alert
//!   goes out (more of the same send nothing new, and their 500s raise no
//!   second, 5xx-rate alert), and serving goes on.
//! - `GET /error` answers 500. The HTTP monitor watches every route: when
//!   5% or more of at least 20 requests in the last minute answer 5xx, one
//!   incident fires (a burst of `/error` does it), and it resolves after a
//!   calm minute. Requests slower than a second are logged.
//! - `DRAIN_SECONDS`: how long the server keeps serving after readiness
//!   turns 503 on shutdown (default 5: at least twice the time a load
//!   balancer probing `/readyz` needs to notice, see docs/health.md).
//!
//! Ctrl-C or SIGTERM: readiness answers 503 at once, then the server drains
//! for `DRAIN_SECONDS`, pending alerts are flushed, and it exits 0.

use std::time::Duration;

use actix_web::http::header::{self, ContentType};
use actix_web::{guard, web, App, FromRequest, Handler, HttpResponse, HttpServer, Responder};
use watchpost::checks::{HttpCheck, PostgresCheck};
use watchpost::ratelimit::Quota;
use watchpost::Watchpost;
use watchpost_actix::WatchpostExt;
use watchpost_redis::RedisStore;

#[actix_web::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Failing checks are logged here (never in the HTTP body by default),
    // on stderr: stdout is the program's own output.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
    let quota: Quota = std::env::var("RATE_LIMIT")
        .unwrap_or_else(|_| "120/min".to_owned())
        .parse()
        .map_err(|e| format!("RATE_LIMIT: {e}"))?;
    let drain = seconds_var("DRAIN_SECONDS", 5)?;

    // One handle: alerts (Telegram, webhooks, Sentry from the environment;
    // the log if none), the panic hook, health checks run in the
    // background, the HTTP monitor and rate limiting, on one thread of its
    // own (not one of actix's runtimes).
    let mut wp = Watchpost::from_env()?.rate_limit(quota).drain(drain);
    if let Some(url) = non_empty_var("UPSTREAM_URL") {
        let check = HttpCheck::get(&url).map_err(|e| format!("UPSTREAM_URL: {e}"))?;
        wp = wp.readiness("upstream", check);
    }
    if let Some(url) = non_empty_var("DATABASE_URL") {
        // The pool the handlers would use; the check goes through it.
        let url = url.trim();
        let invalid = "DATABASE_URL: expected a postgres:// or postgresql:// URL";
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid.into());
        }
        let pool = watchpost::sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(url)
            .map_err(|_| invalid)?;
        wp = wp.readiness("postgres", PostgresCheck::new(pool));
    }
    if let Some(url) = non_empty_var("REDIS_URL") {
        // Replicas share dedupe, incidents and rate limits.
        let prefix = non_empty_var("WATCHPOST_REDIS_PREFIX").unwrap_or_else(|| "watchpost".into());
        let store = RedisStore::builder(url.trim())
            .prefix(prefix.trim())
            .build()
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        wp = wp.shared(store);
    }
    let wp = wp.build()?;

    // actix-web builds one `App` per worker thread, by calling the closure
    // below once per worker: the handle is built once, above, and each
    // `App` gets layers sharing its state (one budget per client, one
    // error rate for the whole service).
    let w = wp.clone();
    let app = move || {
        App::new()
            // /livez /readyz /healthz, rate limit, monitor, catch panic:
            // everything
            .wrap(w.layers())
            .service(get_route("/", hello))
            .service(get_route("/panic", panic_handler))
            .service(get_route("/error", error_handler))
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
    let sinks: Vec<&str> = wp.alerter().sink_names().collect();
    println!("alerts go to: {}", sinks.join(", "));
    println!("{}", wp.status());

    // Graceful shutdown: readiness 503, the drain, in-flight requests
    // finished (actix's own signal handling, which would stop without the
    // drain, is off). actix also waits for idle keep-alive connections (a
    // load balancer's, 5 s keep-alive): 2 s after the drain is enough for
    // this app's requests, so it exits then rather than 5 s later.
    let server = HttpServer::new(app).listen(listener)?.shutdown_timeout(2);
    watchpost_actix::serve(server, &wp).await?;
    drop(wp); // delivers what is still queued, for 3 s at most
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

/// An environment variable, if set to something other than blanks.
fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A whole number of seconds from `name`, `default` when unset.
fn seconds_var(name: &str, default: u64) -> Result<Duration, String> {
    match non_empty_var(name) {
        None => Ok(Duration::from_secs(default)),
        Some(value) => value
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{name} must be a whole number of seconds, got {value:?}")),
    }
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
