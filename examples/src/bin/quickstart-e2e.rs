//! The quickstart as a binary, for the end-to-end tests in
//! `examples/tests/quickstart.rs`: cargo rebuilds a package's binaries before
//! its integration tests (examples only under a plain `cargo test`), so the
//! tests never run a stale build.

#[path = "../../quickstart.rs"]
mod quickstart;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quickstart::main()
}
