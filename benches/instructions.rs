//! Instructions per request, counted by callgrind: the request path's
//! overhead against its peers, in numbers that stay the same on a busy
//! machine (the wall clock on a shared 2-core VM moves by ±20% between
//! runs; instruction counts move by less than 1%).
//!
//! `cargo bench --bench instructions` runs every scenario in a child
//! process of this binary under `valgrind --tool=callgrind`, counting only
//! the measured loop (`--toggle-collect` on [`measured`]): requests are
//! built before it, the service is warmed up (every key seen once, lazy
//! tables built) before it, and each request's future is polled to
//! completion on a no-op waker inside it, so no runtime or timer is
//! counted. The table printed gives each scenario's instructions per
//! request, the overhead over its bare app, and the ratios the performance
//! targets are stated in. Without valgrind it says so and exits 0.
//!
//! `cargo bench --bench instructions -- SCENARIO` runs one scenario
//! natively (no valgrind), for a profiler; `-- --list` lists them.

// A bench that cannot set up should stop.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::routing::get;
use axum::Router;
use tower::Service;
use watchpost::ratelimit::{Quota, RateLimiter};

/// Requests counted per scenario (after the warm-up).
const ITERATIONS: usize = 20_000;
const PROXY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
const ALLOW_ALL: u32 = 1_000_000_000;

/// The loop callgrind counts: everything `step` does, nothing else.
#[inline(never)]
fn measured(iterations: usize, step: &mut dyn FnMut(usize)) {
    for i in 0..iterations {
        step(black_box(i));
    }
}

/// Polls `future` once on a no-op waker: every service measured here
/// answers without waiting.
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the measured service did not answer at once"),
    }
}

fn client(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xCB00_0000_u32 + i as u32)) // 203.0.0.0 + i
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// From a trusted proxy (10.0.0.1) with `X-Forwarded-For: <client>`.
    Proxy,
    /// Straight from the client: its address is the peer.
    Peer,
}

fn requests(keys: usize, via: Via) -> Vec<Request<Body>> {
    (0..ITERATIONS.max(keys))
        .map(|i| {
            let ip = client(i % keys);
            let mut builder = Request::get("/");
            if via == Via::Proxy {
                builder = builder.header("x-forwarded-for", ip.to_string());
            }
            let mut req = builder.body(Body::empty()).expect("request");
            let peer = match via {
                Via::Proxy => PROXY,
                Via::Peer => SocketAddr::new(ip, 40000),
            };
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        })
        .collect()
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// Runs `service` over requests from `keys` clients: each key once to warm
/// up, then [`ITERATIONS`] counted.
fn run_axum<S>(mut service: S, keys: usize, via: Via)
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let mut warm = requests(keys, via);
    for req in warm.drain(..keys.max(1000)) {
        call(&mut service, req);
    }
    drop(warm);
    let mut reqs: Vec<Option<Request<Body>>> = requests(keys, via).into_iter().map(Some).collect();
    // A stride through the keys, so that consecutive requests differ.
    let n = reqs.len();
    measured(ITERATIONS, &mut |i| {
        let req = reqs[(i * 7919) % n].take().expect("each request once");
        call(&mut service, req);
    });
}

fn call<S>(service: &mut S, req: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    ready(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    let res = ready(service.call(req)).expect("infallible");
    assert!(res.status().is_success(), "{}", res.status());
    black_box(res);
}

fn limiter() -> RateLimiter {
    RateLimiter::per_ip(Quota::per_second(
        NonZeroU32::new(ALLOW_ALL).expect("non-zero"),
    ))
}

macro_rules! governor {
    ($key:expr, $headers:expr) => {{
        let mut builder = tower_governor::governor::GovernorConfigBuilder::default();
        builder.per_nanosecond(1).burst_size(ALLOW_ALL);
        let mut builder = builder.key_extractor($key);
        if $headers {
            let config = builder.use_headers().finish().expect("config");
            app().layer(tower_governor::GovernorLayer::new(config))
        } else {
            let config = builder.finish().expect("config");
            app().layer(tower_governor::GovernorLayer::new(config))
        }
    }};
}

/// The scenarios, by name: `(name, bare app it is compared with)`.
fn scenarios() -> Vec<(String, Option<String>)> {
    let mut all = Vec::new();
    for via in ["proxy", "peer"] {
        all.push((format!("axum/bare/{via}"), None));
        for keys in [1, 100_000] {
            for who in [
                "watchpost",
                "watchpost_no_headers",
                "tower_governor",
                "tower_governor_headers",
            ] {
                all.push((
                    format!("axum/{who}/{via}/{keys}"),
                    Some(format!("axum/bare/{via}")),
                ));
            }
        }
    }
    for who in ["watchpost", "tower_http"] {
        all.push((
            format!("axum/catch_panic/{who}"),
            Some("axum/bare/peer".into()),
        ));
    }
    for who in ["watchpost", "peers"] {
        all.push((format!("axum/stack/{who}"), Some("axum/bare/proxy".into())));
    }
    all.push(("actix/bare".into(), None));
    for who in ["rate_limit", "probes", "layers", "layers_configure"] {
        all.push((format!("actix/{who}"), Some("actix/bare".into())));
    }
    all
}

fn run(name: &str) {
    let parts: Vec<&str> = name.split('/').collect();
    let via = |s: &str| if s == "proxy" { Via::Proxy } else { Via::Peer };
    let keys = |s: &str| s.parse::<usize>().expect("keys");
    match parts.as_slice() {
        ["axum", "bare", v] => run_axum(app().with_state(()), 1, via(v)),
        ["axum", "watchpost", v, k] => {
            let layer = watchpost_axum::RateLimitLayer::new(limiter());
            run_axum(app().layer(layer).with_state(()), keys(k), via(v));
        }
        ["axum", "watchpost_no_headers", v, k] => {
            let layer = watchpost_axum::RateLimitLayer::new(limiter().quota_headers(false));
            run_axum(app().layer(layer).with_state(()), keys(k), via(v));
        }
        ["axum", who @ ("tower_governor" | "tower_governor_headers"), v, k] => {
            use tower_governor::key_extractor::{PeerIpKeyExtractor, SmartIpKeyExtractor};
            let headers = *who == "tower_governor_headers";
            let router = if via(v) == Via::Proxy {
                governor!(SmartIpKeyExtractor, headers)
            } else {
                governor!(PeerIpKeyExtractor, headers)
            };
            run_axum(router.with_state(()), keys(k), via(v));
        }
        ["axum", "catch_panic", "watchpost"] => {
            let layer = watchpost_tower::CatchPanicLayer::new();
            run_axum(app().layer(layer).with_state(()), 1, Via::Peer);
        }
        ["axum", "catch_panic", "tower_http"] => {
            let layer = tower_http::catch_panic::CatchPanicLayer::new();
            run_axum(app().layer(layer).with_state(()), 1, Via::Peer);
        }
        ["axum", "stack", "watchpost"] => {
            use watchpost_axum::WatchpostExt;
            let wp = handle();
            let router = app().merge(wp.routes()).layer(wp.layers());
            run_axum(router.with_state(()), 100_000, Via::Proxy);
        }
        ["axum", "stack", "peers"] => {
            use tower_governor::key_extractor::SmartIpKeyExtractor;
            let router = governor!(SmartIpKeyExtractor, true)
                .layer(tower_http::catch_panic::CatchPanicLayer::new());
            run_axum(router.with_state(()), 100_000, Via::Proxy);
        }
        ["actix", who] => run_actix(who),
        _ => panic!("no scenario {name:?} (see --list)"),
    }
}

/// A handle as the README sets it up (alerts to the log, no panic hook:
/// this process is measured, not protected).
fn handle() -> watchpost::Watchpost {
    watchpost::Watchpost::builder()
        .panic_hook(false)
        .rate_limit(Quota::per_second(
            NonZeroU32::new(ALLOW_ALL).expect("non-zero"),
        ))
        .build()
        .expect("handle")
}

fn run_actix(who: &str) {
    use actix_web::{test, web, App};
    use watchpost_actix::WatchpostExt;

    let handler = || async { "ok" };
    actix_rt::System::new().block_on(async move {
        let wp = handle();
        macro_rules! measure {
            ($app:expr) => {{
                let app = test::init_service($app.route("/", web::get().to(handler))).await;
                let request = |i: usize| {
                    test::TestRequest::get()
                        .uri("/")
                        .peer_addr(SocketAddr::new(client(i % 100_000), 40000))
                        .to_request()
                };
                for i in 0..100_000 {
                    actix_call(&app, request(i));
                }
                let mut reqs: Vec<Option<_>> = (0..ITERATIONS).map(|i| Some(request(i))).collect();
                measured(ITERATIONS, &mut |i| {
                    actix_call(&app, reqs[i].take().expect("each request once"));
                });
            }};
        }
        match who {
            "bare" => measure!(App::new()),
            "rate_limit" => measure!(App::new().wrap(watchpost_actix::RateLimit::new(limiter()))),
            "probes" => measure!(App::new().configure(wp.probes())),
            // The README layout: the middleware answers the probes.
            "layers" => measure!(App::new().wrap(wp.layers())),
            // The layout before: the probes in the router as well.
            "layers_configure" => measure!(App::new().wrap(wp.layers()).configure(wp.probes())),
            other => panic!("no actix scenario {other:?}"),
        }
    });
}

fn actix_call<S, B>(app: &S, req: actix_http::Request)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    let res = ready(app.call(req)).expect("infallible");
    assert!(res.status().is_success(), "{}", res.status());
    black_box(res);
}

/// Runs every scenario under callgrind and prints the table.
fn drive() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("skipped: valgrind is not installed (apt-get install valgrind)");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let dir = std::env::temp_dir().join(format!("watchpost-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut counts = std::collections::HashMap::new();
    println!(
        "{:<42} {:>12} {:>12}",
        "scenario", "per request", "overhead"
    );
    for (name, bare) in scenarios() {
        let out = dir.join(name.replace('/', "_"));
        let status = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg("--toggle-collect=*measured*")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(&exe)
            .arg(&name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("valgrind");
        assert!(status.success(), "{name} failed under valgrind");
        let total = callgrind_total(&out);
        let per = total as f64 / ITERATIONS as f64;
        counts.insert(name.clone(), per);
        let overhead = bare
            .as_ref()
            .and_then(|b| counts.get(b))
            .map(|b| format!("{:+.0}", per - b))
            .unwrap_or_default();
        println!("{name:<42} {per:>12.0} {overhead:>12}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let over = |name: &str, bare: &str| counts[name] - counts[bare];
    println!();
    println!("{:<62} {:>7}", "ratio of overheads (target)", "ratio");
    let ratio = |label: String, ours: f64, theirs: f64| {
        println!("{label:<62} {:>6.2}x", ours / theirs);
    };
    for via in ["proxy", "peer"] {
        let bare = format!("axum/bare/{via}");
        for keys in [1, 100_000] {
            let ours = over(&format!("axum/watchpost/{via}/{keys}"), &bare);
            let headers = over(&format!("axum/tower_governor_headers/{via}/{keys}"), &bare);
            let plain = over(&format!("axum/tower_governor/{via}/{keys}"), &bare);
            ratio(
                format!("rate limit {via} {keys} keys / tower_governor headers (<=0.5)"),
                ours,
                headers,
            );
            ratio(
                format!("rate limit {via} {keys} keys / tower_governor plain (<=1.0)"),
                ours,
                plain,
            );
            let no_headers = over(&format!("axum/watchpost_no_headers/{via}/{keys}"), &bare);
            ratio(
                "  both without headers (<=1.0)".to_owned(),
                no_headers,
                plain,
            );
        }
    }
    ratio(
        "catch panic / tower-http (<=1.0)".into(),
        over("axum/catch_panic/watchpost", "axum/bare/peer"),
        over("axum/catch_panic/tower_http", "axum/bare/peer"),
    );
    ratio(
        "README stack / tower_governor headers + tower-http (<=0.6)".into(),
        over("axum/stack/watchpost", "axum/bare/proxy"),
        over("axum/stack/peers", "axum/bare/proxy"),
    );
    println!(
        "{:<62} {:>7.0}",
        "actix configure(probes), instructions per other request (<=300)",
        over("actix/probes", "actix/bare")
    );
}

/// The `summary:` (or `totals:`) line of a callgrind output file.
fn callgrind_total(path: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(path).expect("callgrind output");
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .expect("a summary line")
}

fn main() {
    // `cargo bench` passes `--bench`; criterion's filters are not used here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("--list") => {
            for (name, _) in scenarios() {
                println!("{name}");
            }
        }
        Some(name) if !name.starts_with('-') => run(name),
        _ => drive(),
    }
}
