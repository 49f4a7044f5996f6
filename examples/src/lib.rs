//! Examples for watchpost; see examples/README.md.
#![doc = include_str!("../../README.md")]

// The guides under docs/, compiled and run as doc tests so their code can't
// rot. The modules exist only while rustdoc collects doc tests
// (`cargo test --doc -p watchpost-examples`), like the rustdoc book's
// "Include items only when collecting doctests".
#[cfg(doctest)]
#[doc = include_str!("../../docs/health.md")]
mod health_guide {}

#[cfg(doctest)]
#[doc = include_str!("../../docs/rate-limiting.md")]
mod rate_limiting_guide {}

#[cfg(doctest)]
#[doc = include_str!("../../docs/alerts.md")]
mod alerts_guide {}

#[cfg(doctest)]
#[doc = include_str!("../../docs/monitors.md")]
mod monitors_guide {}

#[cfg(doctest)]
#[doc = include_str!("../../docs/many-instances.md")]
mod many_instances_guide {}
