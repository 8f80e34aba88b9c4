//! Configuration: embedded defaults, an optional TOML file, then environment overrides.
//!
//! Precedence (later wins): built-in defaults → `--config FILE` → `TRADESERVE_<SECTION>__<KEY>`
//! variables (e.g. `TRADESERVE_SERVER__REQUEST_DEADLINE=25ms`, `TRADESERVE_RISK__MAX_DAILY_ORDERS=500`)
//! → `TRADESERVE_LISTEN` → `--listen`. Unknown keys are errors, and [`Config::validate`] checks
//! every value before a port is bound, so a bad config fails at start with a message that
//! names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tradeserve_core::risk::RiskLimits;
use tradeserve_core::sizing::SizingPolicy;
use tradeserve_core::types::Role;
use tradeserve_events::chain::ChainKey;
use tradeserve_models::VersionSelection;
use tradeserve_models::remote::BackendKind;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub models: ModelsConfig,
    pub features: FeaturesConfig,
    pub events: EventsConfig,
    pub risk: RiskLimits,
    pub sizing: SizingPolicy,
    pub control: ControlConfig,
    /// Explanations (`explain: true`): permutations sampled and their seed.
    pub explain: tradeserve_core::explain::ExplainConfig,
    /// API keys, roles and quotas; none: authentication off (loopback only, unless
    /// `auth.allow_insecure`).
    pub auth: crate::auth::config::AuthConfig,
    /// Where risk positions and daily order counts are kept: this replica, or Redis.
    pub ledger: crate::ledger::LedgerConfig,
    /// The access log and trace export.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// How long a decision is kept under its idempotency key, and how many keys a replica
    /// holds in memory.
    pub idempotency: tradeserve_core::idempotency::IdempotencyConfig,
}

/// Experiments, rollouts and the kill switch: where their state lives and how often it is
/// checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `file` (embedded default; one process) or `redis` (shared by every replica).
    pub store: StoreKind,
    /// The state file of the `file` store.
    pub file: PathBuf,
    /// `redis://[:password@]host:port/db` of the `redis` store.
    pub redis_url: String,
    /// Keys are `<prefix>:…`.
    pub redis_prefix: String,
    /// Deadline of each call to the store.
    #[serde(with = "humantime_serde")]
    pub store_timeout: Duration,
    /// How often the store is re-read (how fast other replicas' changes arrive).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often the active rollout's gates are evaluated.
    #[serde(with = "humantime_serde")]
    pub gate_interval: Duration,
    /// Shadow runs that may wait; beyond this they are shed (counted, never blocking).
    pub shadow_queue: usize,
    /// Derive outcomes from the feature source (the embedded replay's next bar).
    pub derive_outcomes: bool,
    /// Recent decisions remembered for `POST /api/v1/outcomes`.
    pub outcome_window: usize,
    /// A rollout stage whose candidate gets no traffic this long is reported as starved
    /// (its gate report, `tradeserve_rollout_stage_starved`, a warning).
    #[serde(with = "humantime_serde")]
    pub stage_idle_after: Duration,
    /// With the `redis` store: how often this replica publishes its experiment and rollout
    /// measurements for the fleet's reports and gates (each sees the others' this much late).
    #[serde(with = "humantime_serde")]
    pub fleet_interval: Duration,
    /// With the `redis` store: how long a unit's published measurements are kept after its
    /// last publish (a stopped replica's share counts until then).
    #[serde(with = "humantime_serde")]
    pub fleet_ttl: Duration,
    /// With the `redis` store and posted outcomes: how long after its publish a decision's
    /// outcome can be posted to any replica (on its own replica: while in `outcome_window`).
    #[serde(with = "humantime_serde")]
    pub fleet_outcome_ttl: Duration,
    /// Operators needed to release a trading halt: 1, or 2 (a second, different operator
    /// confirms the first one's release; until then the halt stays in force).
    pub halt_release_approvals: u8,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            store: StoreKind::File,
            file: PathBuf::from("var/control/state.json"),
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_prefix: "tradeserve".into(),
            store_timeout: Duration::from_millis(500),
            poll_interval: Duration::from_millis(500),
            gate_interval: Duration::from_secs(1),
            shadow_queue: 1024,
            derive_outcomes: true,
            outcome_window: 200_000,
            stage_idle_after: Duration::from_secs(60),
            fleet_interval: Duration::from_secs(1),
            fleet_ttl: Duration::from_secs(7 * 24 * 3600),
            fleet_outcome_ttl: Duration::from_secs(3600),
            halt_release_approvals: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    File,
    Redis,
}

impl ControlConfig {
    fn validate(&self) -> Result<(), String> {
        if self.store == StoreKind::Redis
            && !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://"))
        {
            return Err("control.redis_url must be a redis:// or rediss:// URL".into());
        }
        if self.store_timeout.is_zero() {
            return Err("control.store_timeout must be > 0".into());
        }
        if self.poll_interval < Duration::from_millis(50)
            || self.gate_interval < Duration::from_millis(50)
        {
            return Err(
                "control.poll_interval and control.gate_interval must be at least 50ms".into(),
            );
        }
        if self.fleet_interval < Duration::from_millis(50) {
            return Err("control.fleet_interval must be at least 50ms".into());
        }
        if !(1..=2).contains(&self.halt_release_approvals) {
            return Err("control.halt_release_approvals must be 1 or 2".into());
        }
        if self.fleet_ttl < Duration::from_secs(60)
            || self.fleet_outcome_ttl < Duration::from_secs(60)
        {
            return Err(
                "control.fleet_ttl and control.fleet_outcome_ttl must be at least 1m".into(),
            );
        }
        if self.shadow_queue == 0 || self.outcome_window == 0 {
            return Err(
                "control.shadow_queue and control.outcome_window must be at least 1".into(),
            );
        }
        Ok(())
    }
}

/// HTTP server and request handling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (logged at start).
    pub listen: String,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Requests processed at once; more are answered 429 at once (admission control).
    pub max_in_flight: usize,
    /// Decisions per second this replica sustains at client p99 < 10 ms, as measured on its
    /// hardware (docs/BENCHMARKS.md: 25,000 on two shared vCPUs, issue 16). Exported as
    /// `tradeserve_capacity_decisions_per_second`; the load alert fires at 80 % of it.
    pub capacity_per_second: f64,
    /// A decision not ready this long after arrival is answered 504.
    #[serde(with = "humantime_serde")]
    pub request_deadline: Duration,
    /// How far in the future a request `timestamp` may be.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Longest wait for in-flight requests and the event flush at shutdown, after the drain
    /// delay.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long readiness answers 503 while requests are still served, so
    /// load balancers stop sending traffic before the listener closes.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Open connections allowed; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Longest time a client may take to send a request's headers (slowloris); the
    /// connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest time a client may take to send a request's body once its headers arrived;
    /// answered 408 and the connection closed.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Async worker threads; 0 = one per CPU core.
    pub worker_threads: usize,
    /// `text` or `json` logs (on stderr).
    pub log_format: LogFormat,
    /// TLS (rustls): certificate, key, optional client CA (mTLS); reloaded when they change.
    pub tls: crate::transport::tls::TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 16 * 1024,
            max_in_flight: 4096,
            capacity_per_second: 25_000.0,
            request_deadline: Duration::from_millis(40),
            max_clock_skew: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            drain_delay: Duration::from_secs(5),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            worker_threads: 0,
            log_format: LogFormat::Text,
            tls: crate::transport::tls::TlsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Which models serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// `bundled` (the `dir` folders) or `mlflow` (the registry, by alias).
    pub source: ModelSourceKind,
    /// Folder of `<role>/<version>/` model folders (MLflow layout).
    pub dir: PathBuf,
    /// Version of each role (bundled source).
    pub versions: VersionSelection,
    /// The MLflow registry (mlflow source).
    pub mlflow: MlflowConfig,
    /// What serves each role: `in_process` (default), `kserve_v2`, `tfserving` or `torchserve`.
    pub backends: tradeserve_models::remote::Backends,
    /// The engine of in-process models: `auto` (the dense-MLP evaluator for plain dense MLPs
    /// that agree with tract, tract for the rest) or `tract` (tract for every model).
    pub engine: tradeserve_models::onnx::EngineChoice,
    /// The Open Inference Protocol server of the `kserve_v2` roles.
    pub kserve_v2: tradeserve_models::remote::KserveV2Config,
    /// The TF Serving REST server of the `tfserving` roles.
    pub tfserving: tradeserve_models::remote::TfServingConfig,
    /// The TorchServe of the `torchserve` roles.
    pub torchserve: tradeserve_models::remote::TorchServeConfig,
    /// What every remote role shares: the fallback and the circuit breaker.
    pub remote: tradeserve_models::remote::backends::RemoteConfig,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            source: ModelSourceKind::Bundled,
            dir: PathBuf::from("models"),
            versions: VersionSelection::default(),
            mlflow: MlflowConfig::default(),
            backends: Default::default(),
            engine: Default::default(),
            kserve_v2: Default::default(),
            tfserving: Default::default(),
            torchserve: Default::default(),
            remote: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSourceKind {
    Bundled,
    Mlflow,
}

/// Where and how to reach the MLflow Model Registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlflowConfig {
    pub tracking_uri: String,
    /// Alias every role is resolved through, unless `roles` says otherwise.
    pub alias: String,
    /// Name of the environment variable holding a bearer token (never put the token here).
    pub token_env: String,
    /// Downloaded model folders, reused across restarts.
    pub cache_dir: PathBuf,
    /// How often aliases are re-resolved.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Deadline of each call to MLflow.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Per-role registered model name and alias; default `tradeserve.<role>` @ `alias`.
    pub roles: BTreeMap<String, RoleOverride>,
}

impl Default for MlflowConfig {
    fn default() -> Self {
        MlflowConfig {
            tracking_uri: "http://127.0.0.1:5000".into(),
            alias: "champion".into(),
            token_env: "MLFLOW_TRACKING_TOKEN".into(),
            cache_dir: PathBuf::from("var/model-cache"),
            poll_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            roles: BTreeMap::new(),
        }
    }
}

/// Overrides for one role's registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoleOverride {
    pub name: Option<String>,
    pub alias: Option<String>,
}

impl MlflowConfig {
    /// Registered model and alias of every role.
    pub fn role_specs(&self) -> Vec<tradeserve_models::RoleSpec> {
        Role::ALL
            .iter()
            .map(|role| {
                let o = self.roles.get(role.as_str()).cloned().unwrap_or_default();
                tradeserve_models::RoleSpec {
                    role: *role,
                    name: o.name.unwrap_or_else(|| role.registry_name()),
                    alias: o.alias.unwrap_or_else(|| self.alias.clone()),
                }
            })
            .collect()
    }

    /// The bearer token, read from the environment variable `token_env` (if set).
    pub fn token(&self) -> Option<String> {
        std::env::var(&self.token_env)
            .ok()
            .filter(|t| !t.is_empty())
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.tracking_uri.starts_with("http://") || self.tracking_uri.starts_with("https://"))
        {
            return Err(format!(
                "models.mlflow.tracking_uri {:?} must be an http(s) URL",
                self.tracking_uri
            ));
        }
        if self.poll_interval < Duration::from_millis(100) {
            return Err("models.mlflow.poll_interval must be at least 100ms".into());
        }
        if self.request_timeout.is_zero() {
            return Err("models.mlflow.request_timeout must be > 0".into());
        }
        if self.alias.trim().is_empty() {
            return Err("models.mlflow.alias must not be empty".into());
        }
        for key in self.roles.keys() {
            if Role::parse(key).is_none() {
                return Err(format!("models.mlflow.roles.{key} is not a model role"));
            }
        }
        Ok(())
    }
}

/// Where features come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesConfig {
    /// `replay` (the bundled bars on a live clock, the default) or `live` (bars from a feed:
    /// `POST /api/v1/bars`).
    pub source: FeatureSourceKind,
    /// Bars CSV replayed by the embedded feature source.
    pub bars: PathBuf,
    /// Replay speed: bars per minute of wall time (1.0 = real time).
    pub replay_speed: f64,
    /// The live source's settings.
    pub live: LiveFeaturesConfig,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            source: FeatureSourceKind::Replay,
            bars: PathBuf::from("data/bars.csv"),
            replay_speed: 1.0,
            live: LiveFeaturesConfig::default(),
        }
    }
}

/// `features.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSourceKind {
    Replay,
    Live,
}

/// `[features.live]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveFeaturesConfig {
    /// A decision whose symbol's newest bar ended longer ago than this is refused
    /// (503 `stale_features`).
    #[serde(with = "humantime_serde")]
    pub max_bar_age: Duration,
    /// Bars of features kept per symbol for `timestamp` requests (1,950: five trading days).
    pub retain_bars: usize,
    /// A bar earlier than its symbol's newest by at most this is put in its place; an earlier
    /// one is rejected as late.
    #[serde(with = "humantime_serde")]
    pub reorder_window: Duration,
    /// Symbols accepted (empty: any valid symbol).
    pub universe: Vec<String>,
    /// Largest `POST /api/v1/bars` body (the service's `server.body_limit_bytes`, 16 KiB, is
    /// sized for decisions: about 120 bars). 1 MiB is about 8,000 bars.
    pub post_limit_bytes: usize,
    /// The Kafka topic of bars (`[features.live.kafka]`; no brokers: `POST /api/v1/bars` only).
    pub kafka: tradeserve_features::live::kafka::KafkaFeedConfig,
}

impl Default for LiveFeaturesConfig {
    fn default() -> Self {
        let d = tradeserve_features::live::LiveConfig::default();
        LiveFeaturesConfig {
            max_bar_age: d.max_bar_age,
            retain_bars: d.retain_bars,
            reorder_window: d.reorder_window,
            universe: Vec::new(),
            post_limit_bytes: 1024 * 1024,
            kafka: Default::default(),
        }
    }
}

impl LiveFeaturesConfig {
    /// The feature crate's settings.
    pub fn live_config(&self) -> tradeserve_features::live::LiveConfig {
        tradeserve_features::live::LiveConfig {
            max_bar_age: self.max_bar_age,
            retain_bars: self.retain_bars,
            reorder_window: self.reorder_window,
            universe: (!self.universe.is_empty()).then(|| self.universe.iter().cloned().collect()),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_bar_age.is_zero() || self.retain_bars == 0 || self.post_limit_bytes < 1024 {
            return Err(
                "features.live.max_bar_age and retain_bars must be positive, post_limit_bytes at least 1024"
                    .into(),
            );
        }
        match self
            .universe
            .iter()
            .find(|s| tradeserve_core::Symbol::parse(s).is_err())
        {
            Some(bad) => Err(format!(
                "features.live.universe: {bad:?} is not a valid symbol"
            )),
            None => Ok(()),
        }
    }
}

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
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
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
            fsync_interval: Duration::from_secs(1),
            kafka: KafkaConfig::default(),
        }
    }
}

impl EventsConfig {
    /// How the audit log's lines are chained (`None`: not chained).
    pub fn chain_key(&self) -> Result<Option<ChainKey>, String> {
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
            ));
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
    fn validate(&self) -> Result<(), String> {
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
            ));
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

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl ModelsConfig {
    /// What the remote backends are built from.
    pub fn remote_setup(&self) -> tradeserve_models::remote::backends::Setup {
        use tradeserve_models::remote::backends::{Folders, Setup};
        Setup {
            backends: self.backends.clone(),
            kserve_v2: self.kserve_v2.clone(),
            tfserving: self.tfserving.clone(),
            torchserve: self.torchserve.clone(),
            remote: self.remote.clone(),
            folders: match self.source {
                ModelSourceKind::Bundled => Folders::Bundled(resolve_path(&self.dir)),
                ModelSourceKind::Mlflow => Folders::Cache(
                    tradeserve_models::mlflow::ModelCache::new(&self.mlflow.cache_dir),
                ),
            },
        }
    }

    fn validate_backends(&self) -> Result<(), String> {
        if !self.backends.any_remote() {
            return Ok(());
        }
        let uses = |kind| self.backends.kinds().any(|k| k == kind);
        if uses(BackendKind::KserveV2) {
            self.kserve_v2.validate()?;
        }
        if uses(BackendKind::Tfserving) {
            self.tfserving.validate()?;
        }
        if uses(BackendKind::Torchserve) {
            self.torchserve.validate()?;
        }
        self.remote.validate()
    }
}

impl ServerConfig {
    fn validate(&self) -> Result<(), String> {
        self.tls.validate()?;
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "server.listen {:?} is not an IP:PORT address",
                self.listen
            ));
        }
        if self.body_limit_bytes < 64 {
            return Err("server.body_limit_bytes must be at least 64".into());
        }
        if !(self.capacity_per_second.is_finite() && self.capacity_per_second > 0.0) {
            return Err("server.capacity_per_second must be a positive number".into());
        }
        if self.max_in_flight == 0 {
            return Err("server.max_in_flight must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        let timeouts = [
            ("request_deadline", self.request_deadline),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ];
        for (key, t) in timeouts {
            if t.is_zero() {
                return Err(format!("server.{key} must be > 0"));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Defaults, then `file`, then the environment, then `listen`.
    pub fn load(file: Option<&Path>, listen: Option<&str>) -> Result<Config, ConfigError> {
        misspelled_env(std::env::vars().map(|(k, _)| k))?;
        let env = Env::prefixed("TRADESERVE_")
            .filter(|k| k.as_str().contains("__"))
            .split("__");
        Self::load_from(file, listen, env, std::env::var("TRADESERVE_LISTEN").ok())
    }

    fn load_from(
        file: Option<&Path>,
        listen: Option<&str>,
        env: Env,
        listen_env: Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(env);
        if let Some(v) = listen_env {
            fig = fig.merge(("server.listen", v));
        }
        if let Some(v) = listen {
            fig = fig.merge(("server.listen", v));
        }
        let config: Config = fig
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Check every value; the message names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.server.validate().map_err(ConfigError::Invalid)?;
        self.auth.validate().map_err(ConfigError::Invalid)?;
        if let Ok(addr) = self.server.listen.parse::<SocketAddr>() {
            crate::auth::config::check_exposure(&self.auth, addr).map_err(ConfigError::Invalid)?;
        }
        if !(self.features.replay_speed.is_finite() && self.features.replay_speed >= 0.0) {
            return invalid("features.replay_speed must be a finite number >= 0".into());
        }
        self.features
            .live
            .validate()
            .map_err(ConfigError::Invalid)?;
        if self.events.queue_capacity == 0 {
            return invalid("events.queue_capacity must be at least 1".into());
        }
        if self.events.sink != SinkKind::AuditLog {
            self.events.kafka.validate().map_err(ConfigError::Invalid)?;
        }
        if self.events.fsync_interval.is_zero() {
            return invalid("events.fsync_interval must be > 0".into());
        }
        if self.events.audit_chain {
            self.events.chain_key().map_err(ConfigError::Invalid)?;
        }
        if self.events.audit_rotate_bytes < 4096 {
            return invalid("events.audit_rotate_bytes must be at least 4096".into());
        }
        self.risk.validate().map_err(ConfigError::Invalid)?;
        self.ledger.validate().map_err(ConfigError::Invalid)?;
        self.check_books_survive()?;
        self.idempotency.validate().map_err(ConfigError::Invalid)?;
        self.telemetry.validate().map_err(ConfigError::Invalid)?;
        self.control.validate().map_err(ConfigError::Invalid)?;
        if !(1..=256).contains(&self.explain.permutations) {
            return invalid("explain.permutations must be between 1 and 256".into());
        }
        if self.explain.max_in_flight == 0 {
            return invalid("explain.max_in_flight must be at least 1".into());
        }
        self.sizing.validate().map_err(ConfigError::Invalid)?;
        if self.models.source == ModelSourceKind::Mlflow {
            self.models
                .mlflow
                .validate()
                .map_err(ConfigError::Invalid)?;
        }
        self.models
            .validate_backends()
            .map_err(ConfigError::Invalid)?;
        for role in tradeserve_core::Role::ALL {
            if self.models.versions.get(role).trim().is_empty() {
                return invalid(format!("models.versions.{role} must not be empty"));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The in-process risk books are rebuilt from the audit log at a restart: without one
    /// (Kafka alone) they would start flat, so that needs the shared ledger.
    fn check_books_survive(&self) -> Result<(), ConfigError> {
        if self.events.sink == SinkKind::Kafka
            && self.ledger.store == crate::ledger::LedgerStore::Memory
        {
            return Err(ConfigError::Invalid(
                "events.sink = \"kafka\" keeps no local record to rebuild this replica's risk \
                 books from at a restart (they would start flat): set events.sink = \"both\", \
                 or ledger.store = \"redis\""
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The sections a `TRADESERVE_<SECTION>__<KEY>` variable can name: [`Config`]'s fields, read
/// from the type itself so a new section is never missed.
fn sections() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().map(|k| k.to_uppercase()).collect(),
        _ => Vec::new(),
    }
}

/// Refuse `TRADESERVE_SERVER_REQUEST_DEADLINE` and the like: a section and a key joined by
/// one underscore would otherwise be ignored without a word.
fn misspelled_env(names: impl Iterator<Item = String>) -> Result<(), ConfigError> {
    let sections = sections();
    for name in names {
        let Some(rest) = name.strip_prefix("TRADESERVE_") else {
            continue;
        };
        if rest.contains("__") {
            continue;
        }
        if let Some(section) = sections.iter().find(|s| rest.starts_with(&format!("{s}_"))) {
            let key = &rest[section.len() + 1..];
            return Err(ConfigError::Invalid(format!(
                "environment variable {name} is not read: a section and its key are joined by two underscores (TRADESERVE_{section}__{key})"
            )));
        }
    }
    Ok(())
}

/// Where a relative data path is looked for: the working directory, then the source
/// checkout this binary was built from (so `tradeserve serve` works from any directory).
fn candidates(path: &Path) -> Vec<PathBuf> {
    if path.is_absolute() {
        return vec![path.to_path_buf()];
    }
    let cwd = std::env::current_dir().unwrap_or_default().join(path);
    // CARGO_MANIFEST_DIR is <checkout>/crates/tradeserve-server.
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap_or(Path::new("."));
    vec![cwd, checkout.join(path)]
}

/// Resolve a data path: as given when it exists (relative to the working directory),
/// otherwise relative to the source checkout this binary was built from.
pub fn resolve_path(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    candidates(path)
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// A data path the service reads (`key` names it), or where it looked and how to set it.
pub fn require_path(key: &str, path: &Path, what: &str) -> Result<PathBuf, ConfigError> {
    let resolved = resolve_path(path);
    if resolved.exists() {
        return Ok(resolved);
    }
    let looked: Vec<String> = candidates(path)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let env = format!("TRADESERVE_{}", key.to_uppercase().replacen('.', "__", 1));
    Err(ConfigError::Invalid(format!(
        "{key} = {:?} not found (looked in {}); set {key} in the config file or {env} to {what}",
        path.display().to_string(),
        looked.join(" and ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment provider that sees nothing, so tests do not depend on the shell.
    fn load(file: Option<&Path>, listen: Option<&str>) -> Result<Config, ConfigError> {
        Config::load_from(
            file,
            listen,
            Env::prefixed("TRADESERVE_TEST_NOTHING_"),
            None,
        )
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(None, None).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.request_deadline, Duration::from_millis(40));
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tradeserve.example.toml");
        assert_eq!(load(Some(&path), None).unwrap(), Config::default());
    }

    #[test]
    fn file_and_listen_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nrequest_deadline = \"25ms\"\n[risk]\nmax_daily_orders = 7\nrestricted_symbols = [\"GME\"]\n[models.versions]\nbull_specialist = \"2\"\n",
        )
        .unwrap();
        let c = load(Some(&path), Some("127.0.0.1:0")).unwrap();
        assert_eq!(c.server.request_deadline, Duration::from_millis(25));
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert_eq!(c.risk.max_daily_orders, 7);
        assert_eq!(c.risk.restricted_symbols, vec!["GME".to_owned()]);
        assert_eq!(c.models.versions.bull_specialist, "2");
        assert_eq!(c.models.versions.bear_specialist, "1");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nmax_in_flight = 10\n")?;
            jail.set_env("TRADESERVE_SERVER__MAX_IN_FLIGHT", "20");
            jail.set_env("TRADESERVE_SIZING__LOT_SIZE", "100");
            jail.set_env("TRADESERVE_LISTEN", "127.0.0.1:9999");
            jail.set_env("TRADESERVE_RISK__RESTRICTED_SYMBOLS", r#"["GME"]"#);
            jail.set_env("TRADESERVE_MODELS__VERSIONS__BULL_SPECIALIST", "2");
            jail.set_env("TRADESERVE_SERVER__REQUEST_DEADLINE", "25ms");
            jail.set_env("TRADESERVE_MODELS__BACKENDS__BULL_SPECIALIST", "torchserve");
            jail.set_env(
                "TRADESERVE_MODELS__BACKENDS__VERSIONS__BULL_SPECIALIST__1",
                "in_process",
            );
            let c = Config::load(Some(Path::new("c.toml")), None).map_err(|e| e.to_string())?;
            use tradeserve_models::remote::BackendKind;
            assert_eq!(
                c.models.backends.of(Role::BullSpecialist, "1"),
                BackendKind::InProcess
            );
            assert_eq!(
                c.models.backends.of(Role::BullSpecialist, "2"),
                BackendKind::Torchserve
            );
            assert_eq!(c.server.max_in_flight, 20);
            assert_eq!(c.sizing.lot_size, 100);
            assert_eq!(c.server.listen, "127.0.0.1:9999");
            assert_eq!(c.risk.restricted_symbols, vec!["GME".to_owned()]);
            assert_eq!(c.models.versions.bull_specialist, "2");
            assert_eq!(c.server.request_deadline, Duration::from_millis(25));
            Ok(())
        });
    }

    #[test]
    fn a_single_underscore_between_section_and_key_is_refused() {
        let err = misspelled_env(["TRADESERVE_SERVER_REQUEST_DEADLINE".to_owned()].into_iter())
            .unwrap_err()
            .to_string();
        assert!(err.contains("TRADESERVE_SERVER__REQUEST_DEADLINE"), "{err}");
        // The right spelling, the listen shortcut and the test harness's variables pass.
        let fine = [
            "TRADESERVE_SERVER__REQUEST_DEADLINE",
            "TRADESERVE_LISTEN",
            "TRADESERVE_MLFLOW",
            "TRADESERVE_CACHE",
            "PATH",
        ];
        misspelled_env(fine.iter().map(|s| s.to_string())).unwrap();
    }

    #[test]
    fn every_section_refuses_a_single_underscore() {
        // The sections of the example file (which documents every key) are exactly the ones
        // the check knows.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tradeserve.example.toml");
        let example: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        let mut documented: Vec<String> = example.keys().map(|k| k.to_uppercase()).collect();
        let mut known = sections();
        documented.sort();
        known.sort();
        assert_eq!(known, documented);
        assert_eq!(known.len(), 12);
        for section in known {
            let name = format!("TRADESERVE_{section}_SOME_KEY");
            let err = misspelled_env([name.clone()].into_iter())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("TRADESERVE_{section}__SOME_KEY")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn kafka_alone_needs_the_shared_ledger() {
        let mut c = Config::default();
        c.events.sink = SinkKind::Kafka;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("ledger.store = \"redis\""), "{err}");
        c.ledger.store = crate::ledger::LedgerStore::Redis;
        c.validate().unwrap();
        c.ledger.store = crate::ledger::LedgerStore::Memory;
        c.events.sink = SinkKind::Both;
        c.validate().unwrap();
    }

    #[test]
    fn bad_config_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
            ("[server]\nbogus = 1\n", "bogus"),
            ("[risk]\nmax_concentration = 2.0\n", "max_concentration"),
            ("[sizing]\nlot_size = 0\n", "lot_size"),
            (
                "[server]\nrequest_deadline = \"soon\"\n",
                "request_deadline",
            ),
            (
                "[models.versions]\nregime_detector = \"\"\n",
                "regime_detector",
            ),
            (
                "[models]\nsource = \"mlflow\"\n[models.mlflow]\ntracking_uri = \"ftp://x\"\n",
                "tracking_uri",
            ),
            (
                "[models]\nsource = \"mlflow\"\n[models.mlflow.roles.trend]\nname = \"x\"\n",
                "roles.trend",
            ),
            ("[models]\nsource = \"s3\"\n", "source"),
            (
                "[models.backends]\nbull_specialist = \"triton\"\n",
                "bull_specialist",
            ),
            (
                "[models.backends]\nbull_specialist = \"kserve_v2\"\n[models.kserve_v2]\nurl = \"ftp://x\"\n",
                "models.kserve_v2.url",
            ),
            (
                "[models.backends.versions.bull_specialist]\n\"2\" = \"triton\"\n",
                "triton",
            ),
            (
                "[models.backends]\nbear_specialist = \"torchserve\"\n[models.torchserve]\nbatch_size = 0\n",
                "batch_size",
            ),
            (
                "[models.backends]\nbull_specialist = \"kserve_v2\"\n[models.kserve_v2]\nmax_in_flight = 0\n",
                "max_in_flight",
            ),
        ];
        for (text, key) in cases {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            let err = load(Some(&path), None).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} → {err}");
        }
        let missing = load(Some(Path::new("/nonexistent.toml")), None);
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
    }
}
