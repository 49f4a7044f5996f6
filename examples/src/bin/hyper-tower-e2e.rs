//! `hyper_tower` as a binary, for the end-to-end tests in
//! `examples/tests/hyper_tower.rs` (cargo rebuilds a package's binaries before
//! its integration tests).

#[path = "../../hyper_tower.rs"]
mod hyper_tower;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    hyper_tower::main()
}
