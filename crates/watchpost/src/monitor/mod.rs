//! Watchers for the patterns that hurt most: an error rate creeping up,
//! latency degrading, a cron job that silently stopped, a gauge past its
//! mark. Each raises one incident through the [`Alerter`](crate::alert::Alerter)
//! and resolves it when it is over.
//!
//! - [`HttpMonitor`]: a rolling window of requests fed by the adapters'
//!   middleware (a handle's `layers()`; on their own
//!   `watchpost_tower::MonitorLayer`, `watchpost_axum::MonitorLayer`,
//!   `watchpost_actix::Monitor`). Fires when the
//!   5xx rate passes a threshold, optionally when p95 latency exceeds a
//!   budget or degrades against the previous hour; logs slow requests.
//! - [`Heartbeat`]: a dead-man's switch for cron jobs and worker loops.
//! - [`ThresholdWatcher`]: hysteresis for any gauge (queue depth, pool
//!   saturation, disk).
//! - Looping alerts (the retry-loop detector) live in the alerter's dedupe:
//!   see [`AlerterBuilder::looping_threshold`](crate::alert::AlerterBuilder::looping_threshold).
//!
//! Watchers are evaluated once a second on watchpost's thread (their
//! alerter's: a [`Watchpost`](crate::Watchpost)'s), never on the request
//! path. Give them a [`ManualClock`] in tests.

mod heartbeat;
mod http;
mod threshold;
mod window;

pub use self::heartbeat::{
    Heartbeat, HeartbeatBuilder, HeartbeatCheck, HeartbeatRun, HeartbeatState,
};
pub use self::http::{HttpMonitor, HttpMonitorBuilder, RequestStart, WindowSnapshot};
pub use self::threshold::{ThresholdWatcher, ThresholdWatcherBuilder};
pub use crate::clock::{Clock, ManualClock};
pub(crate) use crate::clock::{Tick, TICK};
