//! `[events]`: where decision events go — the audit log (rotation, retention, hash chain), a
//! Kafka topic with its durable spool, or both.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tradeserve_core::bounded::PositiveDuration;
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};
use tradeserve_events::chain::ChainKey;

/// Where decision events go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `audit_log` (embedded default), `kafka`, or `both`.
    pub sink: SinkKind,
    /// `reject` (default): a decision whose event cannot be recorded is answered 503
    /// `audit_unavailable`; `serve`: answered anyway and counted as unrecorded.
    pub on_failure: tradeserve_core::pipeline::EventFailurePolicy,
    /// Append-only JSON-lines audit log (the active file; rotated files sit beside it).
    pub audit_log: PathBuf,
    /// The audit log is rotated when its active file reaches this size.
    pub audit_rotate_bytes: u64,
    /// Rotated audit log files kept; older ones are deleted (0 keeps all).
    pub audit_retain_files: usize,
    /// Each audit log line carries the hash of the one before (`tradeserve audit verify`).
    pub audit_chain: bool,
    /// A file holding a secret (at least 16 bytes): the chain's links are then HMAC-SHA256
    /// with it, so only its holders could rewrite the log consistently.
    pub audit_chain_key_file: Option<PathBuf>,
    /// Events that may wait in memory for the Kafka producer.
    pub queue_capacity: usize,
    /// Longest time between an audit log write and its fsync (the machine-crash window).
    pub fsync_interval: PositiveDuration,
    pub kafka: KafkaConfig,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            sink: SinkKind::AuditLog,
            on_failure: tradeserve_core::pipeline::EventFailurePolicy::Reject,
            audit_log: PathBuf::from("var/audit/decisions.jsonl"),
            audit_rotate_bytes: 256 * 1024 * 1024,
            audit_retain_files: 40,
            audit_chain: true,
            audit_chain_key_file: None,
            queue_capacity: 65_536,
            fsync_interval: PositiveDuration::secs(1),
            kafka: KafkaConfig::default(),
        }
    }
}

impl EventsConfig {
    /// How the audit log's lines are chained (`None`: not chained).
    pub fn chain_key(&self) -> Result<Option<ChainKey>, InvalidSetting> {
        if !self.audit_chain {
            return Ok(None);
        }
        let Some(path) = &self.audit_chain_key_file else {
            return Ok(Some(ChainKey::Sha256));
        };
        let key = std::fs::read(path)
            .map_err(|e| format!("events.audit_chain_key_file {}: {e}", path.display()))?;
        let key = key.trim_ascii().to_vec();
        if key.len() < 16 {
            return Err(format!(
                "events.audit_chain_key_file {}: the key must be at least 16 bytes",
                path.display()
            )
            .into());
        }
        Ok(Some(ChainKey::Hmac(key)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    AuditLog,
    Kafka,
    Both,
}

/// The Kafka sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
    /// Create the topic at start if it is missing, with these partitions and replicas.
    pub create_topic: bool,
    pub partitions: i32,
    pub replication: i32,
    /// Durable spool for events the broker cannot take (outage, full queue, shutdown).
    pub spool_dir: PathBuf,
    pub spool_segment_bytes: u64,
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// none | gzip | snappy | lz4 | zstd
    pub compression: String,
    /// Longest wait for deliveries at shutdown; the rest is spooled.
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// How often a spooling sink checks whether the broker is back.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Write every event to a write-ahead log in `spool_dir` before its decision is answered,
    /// so a crash before the broker acknowledged it loses nothing (delivered after restart).
    pub wal: bool,
    /// The write-ahead log starts a new file once this many bytes of it are delivered.
    pub wal_segment_bytes: u64,
    /// Passed to librdkafka as is: `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `ssl.ca.location`, …. These keys contain dots, so they cannot be set through
    /// `TRADESERVE_…` environment variables; keep a file holding a password out of version
    /// control with restricted permissions.
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "trading_decisions".into(),
            create_topic: true,
            partitions: 6,
            replication: 1,
            spool_dir: PathBuf::from("var/spool"),
            spool_segment_bytes: 64 * 1024 * 1024,
            linger: Duration::from_millis(5),
            compression: "lz4".into(),
            flush_timeout: Duration::from_secs(5),
            probe_interval: Duration::from_secs(1),
            wal: true,
            wal_segment_bytes: 64 * 1024 * 1024,
            client: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidSetting> {
        if self.brokers.trim().is_empty() {
            return Err("events.kafka.brokers must not be empty".into());
        }
        if self.topic.trim().is_empty() {
            return Err("events.kafka.topic must not be empty".into());
        }
        if self.partitions < 1 || self.replication < 1 {
            return Err("events.kafka.partitions and replication must be >= 1".into());
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.compression.as_str()) {
            return Err(format!(
                "events.kafka.compression {:?} is not one of none, gzip, snappy, lz4, zstd",
                self.compression
            )
            .into());
        }
        if self.wal_segment_bytes < 4096 {
            return Err("events.kafka.wal_segment_bytes must be at least 4096".into());
        }
        if self.spool_segment_bytes < 4096 {
            return Err("events.kafka.spool_segment_bytes must be at least 4096".into());
        }
        Ok(())
    }
}
