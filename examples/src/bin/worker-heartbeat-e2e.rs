//! `worker_heartbeat` as a binary, for the end-to-end tests in
//! `examples/tests/worker_heartbeat.rs` (cargo rebuilds a package's binaries before
//! its integration tests).

#[path = "../../worker_heartbeat.rs"]
mod worker_heartbeat;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    worker_heartbeat::main()
}
