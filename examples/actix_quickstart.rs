//! Placeholder: being written.

pub(crate) fn main() {}
