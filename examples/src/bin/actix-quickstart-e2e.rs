//! The actix-web quickstart as a binary, for the end-to-end tests in
//! `examples/tests/quickstart.rs` (see `quickstart-e2e.rs`).

#[path = "../../actix_quickstart.rs"]
mod actix_quickstart;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    actix_quickstart::main()
}
