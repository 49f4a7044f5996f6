//! `kubernetes_shutdown` as a binary, for the end-to-end tests in
//! `examples/tests/kubernetes_shutdown.rs` (cargo rebuilds a package's binaries before
//! its integration tests).

#[path = "../../kubernetes_shutdown.rs"]
mod kubernetes_shutdown;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    kubernetes_shutdown::main()
}
