//! Decision events leaving the process.
//!
//! - [`audit_log`]: the embedded [`EventSink`](tradeserve_core::ports::EventSink): one JSON
//!   line per decision in an append-only file, written by a dedicated thread behind a bounded
//!   queue, so a request only ever enqueues.
//! - [`books`]: the risk books as the audit log records them: a checkpoint beside the log
//!   (written as rotated files are retired) and the replay of the lines after it, so a
//!   restart, rotation or retention never starts the books flat.
//! - [`chain`]: the audit log's hash chain (each line carries the previous line's hash) and
//!   its verification.
//! - [`fanout`]: one event to several sinks.
//! - [`kafka`]: the Kafka [`EventSink`](tradeserve_core::ports::EventSink): a delivery thread
//!   that produces to the topic, and spools to disk while the broker cannot take events.
//! - [`metrics`]: the counters every sink reports (created by the server's metrics module).
//! - [`spool`]: the durable on-disk spool where events wait while the broker cannot take them.
//! - [`wal`]: the Kafka sink's write-ahead log: every event is written before its decision is
//!   answered, and delivered again after a crash if the broker had not confirmed it.

pub mod audit_log;
pub mod books;
pub mod chain;
pub mod fanout;
pub mod kafka;
pub mod metrics;
pub mod spool;
pub mod wal;

pub use audit_log::{AuditLog, AuditLogConfig, AuditLogError};
pub use metrics::SinkMetrics;
