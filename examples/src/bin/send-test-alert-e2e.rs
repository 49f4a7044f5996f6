//! `send_test_alert` as a binary, for the end-to-end tests in
//! `examples/tests/send_test_alert.rs` (cargo rebuilds a package's binaries
//! before its integration tests).

#[path = "../../send_test_alert.rs"]
mod send_test_alert;

fn main() -> std::process::ExitCode {
    send_test_alert::main()
}
