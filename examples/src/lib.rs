//! Examples for watchpost; see examples/README.md.
