//! Examples for watchpost; see examples/README.md.
#![doc = include_str!("../../README.md")]
