//! Forensic replay: re-run recorded decisions from their events and report every mismatch.
//!
//! Each event carries the full model input (features and hit rates by name), the price, the
//! strategy override and the registry version of every role. Replay loads exactly those
//! versions (from the bundled model folders, or from the MLflow disk cache), runs the same
//! decision kernel ([`kernel_with`]) the service ran on the event read back as a [`DecisionEvent`], and
//! compares action, quantity, confidence, regime probabilities and strategy weights. The computation is deterministic, so a match is exact up
//! to 1e-12; anything else means the decision was not what these models say.
//!
//! Events come from the audit log (JSON lines) or from the Kafka topic (read from the beginning
//! up to the high watermark of every partition).
//!
//! With [`Replayer::through`], the roles the config serves remotely are re-run through their
//! backends (each version verified there with its golden vectors first; nothing is registered
//! on TorchServe), and numbers compare within [`REMOTE_TOLERANCE`] instead: the server's
//! engine (ONNX Runtime) is not the in-process one, and float32 values cross the wire.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tradeserve_core::ModelSet;
use tradeserve_core::decision::DecisionEvent;
use tradeserve_core::pipeline::{Evaluation, Fetched, Sized, kernel_with};
use tradeserve_core::remote::{Fallback, fetch};
use tradeserve_core::sizing::SizingPolicy;
use tradeserve_core::types::Role;
use tradeserve_models::model_dir::load_model_dir;
use tradeserve_models::{BundledModels, VersionSelection};

use tradeserve_models::remote::backends::RemoteBackends;

/// Why an event could not be replayed (it is counted as skipped, with this reason).
#[derive(Debug, thiserror::Error)]
enum Skip {
    #[error("event lacks the {0} version")]
    NoVersion(Role),
    #[error("{0}")]
    Load(tradeserve_models::ModelLoadError),
    #[error("{0}")]
    Backend(tradeserve_models::remote::backends::BackendError),
    #[error("{0}")]
    Decide(tradeserve_core::PredictError),
}

/// Largest difference between a recorded and a replayed number that still counts as equal.
pub const TOLERANCE: f64 = 1e-12;

/// [`TOLERANCE`] when the replay goes through remote backends: the golden-vector bound of a
/// model's outputs (`tradeserve_models::remote::REMOTE_TOLERANCE`), which the blend carries
/// through to every compared number without amplifying it beyond this.
pub const REMOTE_TOLERANCE: f64 = 1e-5;

/// The remote backends a replay goes through, and the runtime their calls run on.
pub struct Through {
    pub backends: Arc<RemoteBackends>,
    pub runtime: tokio::runtime::Runtime,
}

/// Where replay finds model versions.
#[derive(Debug, Clone)]
pub enum ModelStore {
    /// `<dir>/<role>/<version>/`, the bundled layout.
    Bundled(PathBuf),
    /// `<dir>/tradeserve.<role>/<version>/`, the MLflow disk cache of a service.
    MlflowCache(PathBuf),
}

/// One difference between a recorded decision and its replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub decision_id: String,
    pub field: String,
    pub recorded: Value,
    pub replayed: Value,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub events: u64,
    /// Control events (experiment and rollout changes) seen and passed over: they carry no
    /// decision to re-run.
    pub control_events: u64,
    /// Shadow results (a rollout candidate's comparison) seen and passed over.
    pub shadow_events: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// Events that could not be replayed (unreadable or torn, or model versions not
    /// available).
    pub skipped: u64,
    /// `in_process`, or `remote` when the configured remote backends answered.
    pub through: &'static str,
    /// Largest difference that still counts as equal.
    pub tolerance: f64,
    /// The first 100 differences.
    pub mismatches: Vec<Mismatch>,
    /// Where and why, for the first 100 skipped events (`file:line (byte offset)` for the
    /// audit log).
    pub skipped_reasons: Vec<String>,
}

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    event_type: Option<String>,
}

/// Re-runs events against the model versions they name.
pub struct Replayer {
    store: ModelStore,
    sizing: SizingPolicy,
    sets: HashMap<BTreeMap<Role, String>, Arc<ModelSet>>,
    report: ReplayReport,
    /// Where the event being replayed was read, for skip reasons.
    location: Option<String>,
    through: Option<Through>,
}

impl Replayer {
    pub fn new(store: ModelStore, sizing: SizingPolicy) -> Replayer {
        Replayer {
            store,
            sizing,
            sets: HashMap::new(),
            report: ReplayReport {
                events: 0,
                control_events: 0,
                shadow_events: 0,
                matched: 0,
                mismatched: 0,
                skipped: 0,
                through: "in_process",
                tolerance: TOLERANCE,
                mismatches: Vec::new(),
                skipped_reasons: Vec::new(),
            },
            location: None,
            through: None,
        }
    }

    /// Re-run the remote roles through `through`'s backends.
    pub fn through(mut self, through: Through) -> Replayer {
        self.report.through = "remote";
        self.report.tolerance = REMOTE_TOLERANCE;
        self.through = Some(through);
        self
    }

    /// `set` with its remote roles provided, when replaying through remote backends.
    fn provide(&self, set: ModelSet) -> Result<ModelSet, Skip> {
        match &self.through {
            Some(t) => t
                .runtime
                .block_on(t.backends.provide_set(set))
                .map_err(Skip::Backend),
            None => Ok(set),
        }
    }

    /// The decision `models` make for `recorded`, remote roles through their backends.
    fn decide(&self, models: &ModelSet, recorded: &DecisionEvent) -> Result<Sized, Skip> {
        let snapshot = recorded.snapshot();
        let fetched = match &self.through {
            Some(t) if models.has_remote() => t
                .runtime
                .block_on(fetch(
                    models,
                    &snapshot,
                    recorded.strategy_override,
                    Instant::now() + Duration::from_secs(5),
                    Fallback::None,
                ))
                .map_err(Skip::Decide)?,
            _ => Fetched::NONE,
        };
        kernel_with(
            models,
            &snapshot,
            recorded.strategy_override,
            &self.sizing,
            &fetched,
        )
        .map_err(Skip::Decide)
    }

    fn models(&mut self, versions: &BTreeMap<Role, String>) -> Result<Arc<ModelSet>, Skip> {
        if let Some(set) = self.sets.get(versions) {
            return Ok(Arc::clone(set));
        }
        let version = |role: Role| versions.get(&role).cloned().ok_or(Skip::NoVersion(role));
        let set = match &self.store {
            ModelStore::Bundled(dir) => {
                let selection = VersionSelection {
                    regime_detector: version(Role::RegimeDetector)?,
                    meta_controller: version(Role::MetaController)?,
                    bull_specialist: version(Role::BullSpecialist)?,
                    bear_specialist: version(Role::BearSpecialist)?,
                    sideways_specialist: version(Role::SidewaysSpecialist)?,
                };
                BundledModels::new(dir)
                    .load_set(&selection)
                    .map_err(Skip::Load)?
            }
            ModelStore::MlflowCache(dir) => {
                let load = |role: Role| -> Result<_, Skip> {
                    let v = version(role)?;
                    let folder = dir.join(role.registry_name()).join(&v);
                    let mut m = load_model_dir(
                        &folder,
                        role,
                        format!("models:/{}/{v}", role.registry_name()),
                    )
                    .map_err(Skip::Load)?;
                    m.info.version = v;
                    Ok(m)
                };
                ModelSet::new(
                    load(Role::RegimeDetector)?,
                    load(Role::MetaController)?,
                    [
                        load(Role::BullSpecialist)?,
                        load(Role::BearSpecialist)?,
                        load(Role::SidewaysSpecialist)?,
                    ],
                )
            }
        };
        let set = Arc::new(self.provide(set)?);
        self.sets.insert(versions.clone(), Arc::clone(&set));
        Ok(set)
    }

    fn skip(&mut self, reason: String) {
        self.report.skipped += 1;
        if self.report.skipped_reasons.len() < 100 {
            let reason = match &self.location {
                Some(at) => format!("{at}: {reason}"),
                None => reason,
            };
            self.report.skipped_reasons.push(reason);
        }
    }

    /// Replay one event (a JSON document).
    pub fn replay(&mut self, event: &[u8]) {
        self.report.events += 1;
        if let Ok(Kind {
            event_type: Some(t),
        }) = serde_json::from_slice::<Kind>(event)
        {
            match t.as_str() {
                "control_change" => return self.report.control_events += 1,
                "shadow_result" => return self.report.shadow_events += 1,
                _ => {}
            }
        }
        let recorded: DecisionEvent = match serde_json::from_slice(event) {
            Ok(r) => r,
            Err(e) => return self.skip(format!("unreadable event: {e}")),
        };
        let models = match self.models(&recorded.model_versions) {
            Ok(m) => m,
            Err(e) => return self.skip(format!("{}: {e}", recorded.decision_id)),
        };
        let Sized { eval, quantity } = match self.decide(&models, &recorded) {
            Ok(k) => k,
            Err(e) => return self.skip(format!("{}: {e}", recorded.decision_id)),
        };
        let diffs = differences(&recorded, &eval, quantity, self.report.tolerance);
        if diffs.is_empty() {
            self.report.matched += 1;
            return;
        }
        self.report.mismatched += 1;
        for (field, recorded_value, replayed) in diffs {
            if self.report.mismatches.len() < 100 {
                self.report.mismatches.push(Mismatch {
                    decision_id: recorded.decision_id.to_string(),
                    field: field.to_owned(),
                    recorded: recorded_value,
                    replayed,
                });
            }
        }
    }

    pub fn finish(self) -> ReplayReport {
        self.report
    }
}

/// Every field where the replayed decision differs from the recorded one (numbers beyond
/// [`TOLERANCE`]): name, recorded value, replayed value.
fn differences(
    recorded: &DecisionEvent,
    eval: &Evaluation,
    quantity: u64,
    tolerance: f64,
) -> Vec<(&'static str, Value, Value)> {
    let mut diffs: Vec<(&str, Value, Value)> = Vec::new();
    if eval.action != recorded.action {
        diffs.push(("action", json!(recorded.action), json!(eval.action)));
    }
    if quantity != recorded.quantity {
        diffs.push(("quantity", json!(recorded.quantity), json!(quantity)));
    }
    let numbers = [
        ("confidence", recorded.confidence, eval.confidence),
        (
            "regime_probs.bull",
            recorded.regime_probs.bull,
            eval.regime[0],
        ),
        (
            "regime_probs.bear",
            recorded.regime_probs.bear,
            eval.regime[1],
        ),
        (
            "regime_probs.sideways",
            recorded.regime_probs.sideways,
            eval.regime[2],
        ),
        (
            "regime_probs.entropy",
            recorded.regime_probs.entropy,
            eval.entropy,
        ),
        (
            "strategy_weights.bull_specialist",
            recorded.strategy_weights.bull_specialist,
            eval.weights[0],
        ),
        (
            "strategy_weights.bear_specialist",
            recorded.strategy_weights.bear_specialist,
            eval.weights[1],
        ),
        (
            "strategy_weights.sideways_specialist",
            recorded.strategy_weights.sideways_specialist,
            eval.weights[2],
        ),
    ];
    for (field, a, b) in numbers {
        if (a - b).abs() > tolerance || a.is_nan() != b.is_nan() {
            diffs.push((field, json!(a), json!(b)));
        }
    }
    diffs
}

/// Replay every line of an audit log: its rotated files, oldest first, then the active one.
/// A skipped line is reported with its file, line number and byte offset; a torn last line
/// (a crash mid-write, not yet repaired by a restart) is reported as such.
pub fn replay_audit_log(path: &Path, replayer: &mut Replayer) -> std::io::Result<()> {
    let files = tradeserve_events::audit_log::files(path);
    if files.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no audit log at {}", path.display()),
        ));
    }
    for file in files {
        let text = std::fs::read(&file)?;
        let mut offset = 0usize;
        for (n, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
            replayer.location = Some(format!("{}:{} (byte {offset})", file.display(), n + 1));
            if !line.ends_with(b"\n") {
                replayer.report.events += 1;
                replayer.skip(format!(
                    "torn last line ({} bytes without a newline: a crash during a write)",
                    line.len()
                ));
            } else if line.len() > 1 {
                replayer.replay(&line[..line.len() - 1]);
            }
            offset += line.len();
        }
    }
    replayer.location = None;
    Ok(())
}

/// Replay every event on a topic, from the beginning to the current end of each partition.
pub fn replay_kafka(
    brokers: &str,
    topic: &str,
    client: &BTreeMap<String, String>,
    replayer: &mut Replayer,
) -> Result<(), rdkafka::error::KafkaError> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", "tradeserve-replay")
        .set("enable.auto.commit", "false");
    for (k, v) in client {
        cfg.set(k, v);
    }
    let consumer: BaseConsumer = cfg.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    let mut done = BTreeMap::new();
    while done.len() < ends.len() {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                if let Some(payload) = m.payload() {
                    replayer.replay(payload);
                }
                if m.offset() + 1 >= ends.get(&m.partition()).copied().unwrap_or(0) {
                    done.insert(m.partition(), ());
                }
            }
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(())
}
