//! The telegram sink (in progress).
