//! The webhook sink (in progress).
