//! Run with: cargo run --example hyper_tower
//!
//! watchpost without a web framework: hyper 1 serving a tower stack, with
//! the layers from `watchpost-tower`. What axum's `serve` does for you is
//! spelled out here: the accept loop, the peer address each request needs
//! for per-IP rate limiting, and the graceful shutdown.
//!
//! The stack, outermost first:
//!
//! ```text
//! route names                 the pattern each request matched, for the monitor
//! └─ WatchpostLayer           the handle's layers, in order:
//!    RateLimit                  per client IP; the probes are exempt
//!    └─ Monitor                 5xx rate, slow requests; the probes not counted
//!       └─ CatchPanic           a panic: 500, serving goes on
//!          └─ probe path? ── yes ─> HealthService   /livez /readyz /healthz
//!             └─ no ─> handle                       GET /  /error  /panic
//! ```
//!
//! - `PORT`: listen on 127.0.0.1:PORT (default 3000).
//! - `RATE_LIMIT`: the per-client-IP quota (default `120/min`; also `10/s`,
//!   `5/min burst 10`). Over it: 429 with `Retry-After`.
//! - `TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID` (and `WATCHPOST_TELEGRAM_API_URL`,
//!   `WATCHPOST_WEBHOOK_URL`, `WATCHPOST_WEBHOOK_FORMAT`, `WATCHPOST_SENTRY_DSN`,
//!   `WATCHPOST_SERVICE`, `WATCHPOST_ENV`): where alerts go; nothing set,
//!   they go to the log.
//! - `GET /panic` panics inside the handler: the client gets a 500, one
//!   alert goes out, and serving goes on. `GET /error` answers 500: a burst
//!   of them raises one error-rate incident.
//!
//! Ctrl-C or SIGTERM: readiness answers 503 at once, the server drains for
//! two seconds, stops accepting, lets in-flight requests finish, flushes
//! pending alerts and exits 0.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::http::Extensions;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::{ServiceBuilder, ServiceExt};
use watchpost::ratelimit::Quota;
use watchpost::Watchpost;
use watchpost_tower::{HealthService, RoutePattern, SocketAddrPeer, WatchpostLayer};

/// How long readiness answers 503 before the server stops accepting.
const DRAIN: Duration = Duration::from_secs(2);

#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    // Alerts from the environment (the log if nothing is set), the panic
    // hook, and per-client rate limiting: forwarding headers count only
    // from loopback and private addresses (your own proxy), so behind
    // nginx on this host the client is the forwarded address and a forged
    // header from outside is ignored. No checks registered: /livez and
    // /readyz pass while the process runs, and readiness turns 503 on
    // shutdown. Add yours with `.readiness(..)`.
    let wp = Watchpost::from_env()?
        .rate_limit(quota)
        .drain(DRAIN)
        .build()?;

    // The application, probes included: the handle's monitor doesn't count
    // them (a 503 from /readyz is an answer to the load balancer, not a
    // server error) and its rate limit exempts them.
    let probes = HealthService::new(wp.health().clone());
    let app = tower::service_fn(move |req: Request<Incoming>| {
        let probes = probes.clone();
        async move {
            if probes.get_ref().is_probe_path(req.uri().path()) {
                probes.oneshot(req).await
            } else {
                handle(req).await
            }
        }
    });
    // The route names go in first, for the monitor inside; the rate limiter
    // reads the client's address from a `SocketAddr` request extension
    // (SocketAddrPeer), inserted per connection below.
    let stack = ServiceBuilder::new()
        .map_request(|mut req: Request<Incoming>| {
            if let Some(route) = route(req.uri().path()) {
                req.extensions_mut().insert(route);
            }
            req
        })
        .layer(WatchpostLayer::with(&wp, SocketAddrPeer, Routes))
        .service(app);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("listening on {base}");
    for path in ["/", "/livez", "/readyz", "/healthz", "/panic", "/error"] {
        println!("  {base}{path}");
    }
    let sinks: Vec<&str> = wp.alerter().sink_names().collect();
    println!("alerts go to: {}", sinks.join(", "));
    println!("{}", wp.status());

    // Resolves after Ctrl-C/SIGTERM and the drain (readiness 503 meanwhile).
    let shutdown = wp.shutdown_signal();
    tokio::pin!(shutdown);
    // Tracks every connection, to close them gracefully at the end.
    let connections = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, usually: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // What `into_make_service_with_connect_info` does in axum.
        let service = ServiceBuilder::new()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(peer);
                req
            })
            .service(stack.clone());
        let connection = http1::Builder::new()
            // The timer enables hyper's 30 s header read timeout, so a
            // client sending its headers byte by byte can't hold a
            // connection forever.
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }

    // Stop accepting, then let in-flight requests finish (idle keep-alive
    // connections close at once), within a bound.
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), connections.shutdown())
        .await
        .is_err()
    {
        eprintln!("some connections were still open after 10 s: closing them");
    }

    drop(wp); // delivers what is still queued, for 3 s at most
    println!("shut down cleanly");
    Ok(())
}

/// A request's route: the pattern it matched, never the raw path, so the
/// monitor's figures can't grow one "route" per URL a scanner tries.
#[derive(Clone, Copy, Debug)]
struct Route(&'static str);

/// Plain hyper has no router: this `match` is one.
fn route(path: &str) -> Option<Route> {
    match path {
        "/" => Some(Route("/")),
        "/error" => Some(Route("/error")),
        "/panic" => Some(Route("/panic")),
        _ => None,
    }
}

/// Tells the HTTP monitor where a request's [`Route`] is, so its alerts
/// name the failing routes ("GET /error (45)").
#[derive(Clone, Copy, Debug, Default)]
struct Routes;

impl RoutePattern for Routes {
    type Route = Route;

    fn route(&self, extensions: &Extensions) -> Option<Route> {
        extensions.get::<Route>().copied()
    }

    fn as_str(route: &Route) -> &str {
        route.0
    }
}

/// The application's handler.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let route = req.extensions().get::<Route>().map(|r| r.0);
    Ok(match route {
        Some("/") => text(StatusCode::OK, "Hello from watchpost!\n"),
        Some("/error") => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "demo error from GET /error\n",
        ),
        Some("/panic") => panic!("demo panic from GET /panic"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
