//! Counters a sink reports. The server's metrics module names and registers them; the sink
//! only increments them.

use prometheus::{IntCounter, IntGauge};

/// What happened to the events handed to a sink.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// Accepted into the queue.
    pub enqueued: IntCounter,
    /// Written to their destination.
    pub written: IntCounter,
    /// Refused because the queue was full.
    pub dropped_queue_full: IntCounter,
    /// Refused because the sink was shut down.
    pub dropped_closed: IntCounter,
    /// Accepted but could not be written (I/O error).
    pub write_errors: IntCounter,
    /// Events in the queue, not yet written.
    pub backlog: IntGauge,
    /// 1 while the sink cannot record events (decisions are refused or served unrecorded).
    pub unavailable: IntGauge,
}

impl SinkMetrics {
    /// Unregistered counters, for tests and tools.
    pub fn detached() -> Result<SinkMetrics, prometheus::Error> {
        Ok(SinkMetrics {
            enqueued: IntCounter::new("enqueued", "enqueued")?,
            written: IntCounter::new("written", "written")?,
            dropped_queue_full: IntCounter::new("dropped_queue_full", "dropped_queue_full")?,
            dropped_closed: IntCounter::new("dropped_closed", "dropped_closed")?,
            write_errors: IntCounter::new("write_errors", "write_errors")?,
            backlog: IntGauge::new("backlog", "backlog")?,
            unavailable: IntGauge::new("unavailable", "unavailable")?,
        })
    }
}
