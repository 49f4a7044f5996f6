//! Run with: cargo run --example kubernetes_shutdown
//!
//! Graceful shutdown the way Kubernetes needs it. When a pod is deleted (a
//! rollout, a scale-down, a node drain), Kubernetes sends SIGTERM and, at
//! the same time, starts taking the pod out of its Service's endpoints.
//! That takes a few seconds to reach every kube-proxy, ingress controller
//! and load balancer: a server that stopped at once would refuse requests
//! still routed to it. So, on SIGTERM:
//!
//! 1. `/readyz` answers 503 at once (`/livez` stays 200: the process is
//!    fine, don't restart it), and load balancers probing it stop routing
//!    here;
//! 2. the server goes on serving everything for the drain delay, so
//!    requests still routed here succeed;
//! 3. then it stops accepting connections, and requests in flight finish;
//! 4. pending alerts are flushed, and the process exits 0, before
//!    Kubernetes' SIGKILL at `terminationGracePeriodSeconds`.
//!
//! - `PORT`: listen on 127.0.0.1:PORT (default 3000). In a container, bind
//!   `0.0.0.0` instead, or the kubelet's probes can't reach the server.
//! - `DRAIN_SECONDS`: the drain delay (default 5). At least the readiness
//!   probe's `periodSeconds × failureThreshold`, plus a few seconds for
//!   endpoint updates to spread.
//! - `SLOW_SECONDS`: how long `GET /slow`, a long report, takes (default 3).
//! - `TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID` (and `WATCHPOST_TELEGRAM_API_URL`,
//!   `WATCHPOST_WEBHOOK_URL`, `WATCHPOST_WEBHOOK_FORMAT`, `WATCHPOST_SENTRY_DSN`,
//!   `WATCHPOST_SERVICE`, `WATCHPOST_ENV`): where alerts go; nothing set,
//!   they go to the log.
//!
//! Try it: start a slow request, stop the server while it runs (Ctrl-C
//! does what SIGTERM does), and watch readiness fail while the rest is
//! still served and the request completes:
//!
//! ```sh
//! SLOW_SECONDS=20 cargo run --example kubernetes_shutdown
//! curl -s http://127.0.0.1:3000/slow       # in a second terminal
//! # Ctrl-C in the first; then, within five seconds, in a third:
//! curl -i http://127.0.0.1:3000/readyz     # 503 {"status":"fail","output":"shutting down"}
//! curl -i http://127.0.0.1:3000/           # 200: still serving during the drain
//! ```
//!
//! A Deployment for it (the probes, and a grace period longer than the drain
//! plus the longest request):
//!
//! ```yaml
//! apiVersion: apps/v1
//! kind: Deployment
//! spec:
//!   template:
//!     spec:
//!       terminationGracePeriodSeconds: 30  # > preStop + DRAIN_SECONDS + longest request
//!       containers:
//!         - name: app
//!           env:
//!             - { name: DRAIN_SECONDS, value: "5" }
//!           ports:
//!             - containerPort: 3000
//!           readinessProbe:                # 503 from SIGTERM on: no new traffic
//!             httpGet: { path: /readyz, port: 3000 }
//!             periodSeconds: 2
//!             failureThreshold: 1
//!             timeoutSeconds: 3            # above a check's 2 s timeout
//!           livenessProbe:                 # stays 200 while draining: no restart
//!             httpGet: { path: /livez, port: 3000 }
//!             periodSeconds: 10
//!             failureThreshold: 3
//!             timeoutSeconds: 3
//!           # Optional: wait before SIGTERM is even sent. It adds to the
//!           # drain (and counts against the grace period). `sleep` needs
//!           # Kubernetes 1.30+; before, `exec: {command: ["sleep", "5"]}`
//!           # needs a `sleep` binary in the image (distroless has none).
//!           # lifecycle:
//!           #   preStop:
//!           #     sleep: { seconds: 5 }
//! ```

use std::time::Duration;

use axum::{routing::get, Router};
use watchpost::Watchpost;
use watchpost_axum::WatchpostExt;

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
    let drain = seconds_var("DRAIN_SECONDS", 5)?;
    let slow = seconds_var("SLOW_SECONDS", 3)?;

    // Your readiness checks go here (`.readiness(..)`: a database, an
    // upstream API). While shutting down, readiness fails whatever they say.
    let wp = Watchpost::from_env()?.drain(drain).build()?;

    let app = Router::new()
        .route("/", get(|| async { "Hello from watchpost!\n" }))
        .route("/slow", get(move || slow_report(slow)))
        .merge(wp.routes())
        .layer(wp.layers());

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("listening on {base}");
    for path in ["/", "/slow", "/livez", "/readyz"] {
        println!("  {base}{path}");
    }
    let sinks: Vec<&str> = wp.alerter().sink_names().collect();
    println!("alerts go to: {}", sinks.join(", "));
    println!("on SIGTERM: readiness 503, then {drain:?} of drain");

    // Resolves after SIGTERM (or Ctrl-C) and the drain; during the drain,
    // readiness answers 503 and everything else is served as usual.
    let shutdown = wp.shutdown_signal();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        println!("drain over: no new connections, waiting for requests in flight");
    })
    .await?;
    // No bound of our own on the wait: Kubernetes' SIGKILL at the end of
    // terminationGracePeriodSeconds is the bound.
    println!("requests in flight finished");

    drop(wp); // delivers what is still queued, for 3 s at most
    println!("shut down cleanly");
    Ok(())
}

/// A long request: a report that takes `took` to build.
async fn slow_report(took: Duration) -> String {
    println!("GET /slow: started, answering in {took:?}");
    tokio::time::sleep(took).await;
    println!("GET /slow: done");
    format!("report ready after {took:?}\n")
}

/// A whole number of seconds from variable `name`, `default` if unset.
fn seconds_var(name: &str, default: u64) -> Result<Duration, String> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{name} must be a whole number of seconds, got {value:?}")),
        Err(_) => Ok(Duration::from_secs(default)),
    }
}
