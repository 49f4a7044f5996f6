//! The tracing layer (in progress).
