//! The panic hook (in progress).
