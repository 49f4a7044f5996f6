//! `webhook_alerts` as a binary, for the end-to-end tests in
//! `examples/tests/webhook_alerts.rs` (cargo rebuilds a package's binaries before
//! its integration tests).

#[path = "../../webhook_alerts.rs"]
mod webhook_alerts;

fn main() -> std::process::ExitCode {
    webhook_alerts::main()
}
