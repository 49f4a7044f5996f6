//! Benchmarks for watchpost.
