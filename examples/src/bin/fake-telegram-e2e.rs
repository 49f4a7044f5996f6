//! `fake_telegram` as a binary, for the end-to-end tests in
//! `examples/tests/fake_telegram.rs` (cargo rebuilds a package's binaries
//! before its integration tests).

#[path = "../../fake_telegram.rs"]
mod fake_telegram;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    fake_telegram::main()
}
