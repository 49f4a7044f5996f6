//! Drives the kubernetes_shutdown example through a pod deletion: a long
//! request in flight, SIGTERM, readiness failing while everything else is
//! served during the drain, then no new connections, the request
//! completing, and exit 0.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

mod common;

use std::net::TcpStream;

use common::{get, wait_until, Server};

const BIN: &str = env!("CARGO_BIN_EXE_kubernetes-shutdown-e2e");

#[cfg(unix)]
#[test]
fn sigterm_drains_then_stops_and_the_request_in_flight_completes() {
    // The slow request outlasts the drain by seconds: it is still in
    // flight when the server stops accepting.
    let mut server = Server::start(
        BIN,
        &[
            ("DRAIN_SECONDS", "3".to_owned()),
            ("SLOW_SECONDS", "8".to_owned()),
        ],
    );
    let port = server.port;
    assert_eq!(get(port, "/readyz").0, 200);

    let slow = std::thread::spawn(move || get(port, "/slow"));
    assert!(server.wait_for_output("GET /slow: started"));
    server.sigterm();

    // The drain: readiness fails at once; the process is alive and serves.
    assert!(
        wait_until(|| get(port, "/readyz").0 == 503),
        "readiness never flipped"
    );
    let (_, head, body) = get(port, "/readyz");
    assert!(body.contains("shutting down"), "{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert_eq!(get(port, "/livez").0, 200, "no restart while draining");
    let (status, _, body) = get(port, "/");
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from watchpost!\n"),
        "still serving during the drain"
    );

    // Then no new connections...
    assert!(
        wait_until(|| TcpStream::connect(("127.0.0.1", port)).is_err()),
        "still accepting after the drain"
    );
    // ...but the request in flight completes, and the exit is clean.
    let (status, _, body) = slow.join().unwrap();
    assert_eq!((status, body.as_str()), (200, "report ready after 8s\n"));
    assert!(server.wait_exit().success(), "exit 0");

    // The order of events (the request ends five seconds after the drain
    // by design: a wide margin, not a measured duration).
    let output = server.output();
    let at = |line: &str| {
        output
            .find(line)
            .unwrap_or_else(|| panic!("no {line:?} in {output}"))
    };
    assert!(
        at("drain over") < at("GET /slow: done")
            && at("GET /slow: done") < at("requests in flight finished")
            && at("requests in flight finished") < at("shut down cleanly"),
        "{output}"
    );
}

#[test]
fn an_invalid_drain_delay_is_a_clear_startup_error() {
    let (status, output) = common::run_to_exit(BIN, &[("DRAIN_SECONDS", "5s".to_owned())]);
    assert!(!status.success());
    assert!(output.contains("DRAIN_SECONDS"), "{output}");
}
