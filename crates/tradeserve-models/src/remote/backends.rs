//! Remote backends for the versions the service routes to. Every loaded model keeps its
//! verified in-process copy; when `[models.backends]` names a remote backend for its role and
//! version, [`RemoteBackends::provide`] makes the version servable there (TorchServe: registered
//! already, or packaged into its model store and registered through the management API), sends
//! the version's golden vectors **through the inference path**, and only then attaches the
//! handle (behind a circuit breaker). A version that fails is refused like a broken model: the
//! champion at start-up (the service does not start), a registry swap (the old set keeps
//! serving), an experiment or rollout (refused at the API).
//!
//! It also remembers which TorchServe versions it registered itself, for the steward
//! ([`super::steward`]) to unregister once nothing routes to them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tradeserve_core::bounded::PositiveDuration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tradeserve_core::ModelSet;
use tradeserve_core::model_set::{LoadedModel, RemoteModel};
use tradeserve_core::types::Role;

use super::torchserve::{EnsureError, Ensured};
use super::{
    BackendKind, Backends, BatchConfig, Batcher, Breaker, BreakerConfig, GoldenError, KserveV2,
    KserveV2Config, ModelStatus, REMOTE_TOLERANCE, TfServing, TfServingConfig, TorchServe,
    TorchServeConfig, verify_golden,
};
use crate::mlflow::ModelCache;

/// `[models.remote]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// A remote role's failure: `none` (503 `backend_unavailable`) or `in_process` (its
    /// in-process copy of the same version answers, counted).
    pub fallback: tradeserve_core::remote::Fallback,
    /// Consecutive failures that open a remote role's circuit (calls then fail at once).
    pub circuit_failures: std::num::NonZeroU32,
    /// How long the circuit stays open before one probe call (doubling on failed probes).
    pub circuit_open_for: PositiveDuration,
    /// Micro-batching: concurrent decisions needing the same remote model share one call of
    /// up to this many rows (1: every request calls alone). Batches form from what queued
    /// while `batch_in_flight` calls were busy, with no timer: no added latency at low load
    /// (measured: none at 100/s and 500/s), and the model server's work per decision falls
    /// as load rises instead of collapsing it.
    pub batch_max_rows: std::num::NonZeroUsize,
    /// Calls per remote model on the wire at once when batching.
    pub batch_in_flight: std::num::NonZeroUsize,
    /// How often the steward reads each routed remote version's status from its server (and,
    /// on TorchServe, sets the default version, re-registers what a restart lost and
    /// unregisters what nothing routes to).
    pub status_interval: PositiveDuration,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            fallback: Default::default(),
            circuit_failures: tradeserve_core::bounded::at_least_one_u32(5),
            circuit_open_for: PositiveDuration::secs(1),
            batch_max_rows: tradeserve_core::bounded::at_least_one_usize(16),
            batch_in_flight: tradeserve_core::bounded::at_least_one_usize(4),
            status_interval: PositiveDuration::secs(5),
        }
    }
}

/// What [`RemoteBackends::new`] is built from: which backend serves each role and version,
/// each backend's client settings, the breaker and batching, and where the verified model
/// folders (with their golden vectors) are.
#[derive(Clone)]
pub struct Setup {
    pub backends: Backends,
    pub kserve_v2: KserveV2Config,
    pub tfserving: TfServingConfig,
    pub torchserve: TorchServeConfig,
    pub remote: RemoteConfig,
    pub folders: Folders,
}

/// Why a version cannot be served by its remote backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot build the HTTP client of {kind}: {why}")]
    Client { kind: &'static str, why: String },
    #[error("{role} v{version} cannot be served from TorchServe: {cause}")]
    TorchServe {
        role: Role,
        version: String,
        cause: EnsureError,
    },
    #[error("{role} v{version} on {endpoint} does not answer its golden vectors: {cause}")]
    Verification {
        role: Role,
        version: String,
        endpoint: String,
        cause: GoldenError,
    },
    #[error(
        "{role} v{version} on {endpoint} does not answer its golden vectors: it differs from them by {worst:e} (> {REMOTE_TOLERANCE:e})"
    )]
    Mismatch {
        role: Role,
        version: String,
        endpoint: String,
        worst: f32,
    },
}

impl BackendError {
    /// The server did not answer: worth retrying later, unlike a version that is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::TorchServe { cause, .. } => cause.is_transient(),
            BackendError::Verification { cause, .. } => cause.is_transient(),
            BackendError::Client { .. } | BackendError::Mismatch { .. } => false,
        }
    }
}

/// Where a version's model folder is (golden vectors, and what TorchServe archives are built
/// from).
#[derive(Clone)]
pub enum Folders {
    Bundled(PathBuf),
    Cache(ModelCache),
}

/// A TorchServe version TradeServe registered.
#[derive(Debug, Clone)]
pub struct Registered {
    pub role: Role,
    pub name: String,
    pub version: String,
}

/// The configured remote backends; see the module docs.
pub struct RemoteBackends {
    kinds: Backends,
    kserve: KserveV2,
    tfserving: TfServing,
    torchserve: TorchServe,
    breaker: BreakerConfig,
    /// `None`: every request calls alone.
    batching: Option<BatchConfig>,
    folders: Folders,
    verify_timeout: Duration,
    /// TorchServe versions TradeServe registered, by (name, version).
    registered: Mutex<HashMap<(String, String), Registered>>,
}

impl RemoteBackends {
    /// `None` when every role is in process.
    pub fn new(config: Setup) -> Result<Option<Arc<RemoteBackends>>, BackendError> {
        if !config.backends.any_remote() {
            return Ok(None);
        }
        fn client<E: std::fmt::Display>(kind: &'static str) -> impl Fn(E) -> BackendError {
            move |e| BackendError::Client {
                kind,
                why: e.to_string(),
            }
        }
        Ok(Some(Arc::new(RemoteBackends {
            kinds: config.backends,
            kserve: KserveV2::new(config.kserve_v2).map_err(client("kserve_v2"))?,
            tfserving: TfServing::new(config.tfserving).map_err(client("tfserving"))?,
            torchserve: TorchServe::new(config.torchserve).map_err(client("torchserve"))?,
            breaker: BreakerConfig {
                failures: config.remote.circuit_failures.get(),
                open_for: config.remote.circuit_open_for.get(),
            },
            batching: (config.remote.batch_max_rows.get() > 1).then_some(BatchConfig {
                max_rows: config.remote.batch_max_rows.get(),
                in_flight: config.remote.batch_in_flight.get(),
            }),
            folders: config.folders,
            verify_timeout: Duration::from_secs(5),
            registered: Mutex::new(HashMap::new()),
        })))
    }

    pub fn torchserve(&self) -> &TorchServe {
        &self.torchserve
    }

    /// What serves `version` of `role`.
    pub fn kind(&self, role: Role, version: &str) -> BackendKind {
        self.kinds.of(role, version)
    }

    /// What `version` of `role`'s server says about it now.
    pub async fn status(&self, role: Role, version: &str) -> ModelStatus {
        match self.kind(role, version) {
            BackendKind::InProcess => ModelStatus::Ready,
            BackendKind::KserveV2 => self.kserve.status(role, version).await,
            BackendKind::Tfserving => self.tfserving.status(role, version).await,
            BackendKind::Torchserve => {
                let name = self.torchserve.name(role, version);
                match self.torchserve.management().status(&name, version).await {
                    Ok(Some(s)) => ModelStatus::Registered {
                        ready_workers: s.ready_workers,
                        workers: s.workers,
                    },
                    Ok(None) => ModelStatus::Missing,
                    Err(e) => ModelStatus::Unreachable {
                        error: e.to_string(),
                    },
                }
            }
        }
    }

    /// Whether some role or version is served by `kind`.
    pub fn uses(&self, kind: BackendKind) -> bool {
        self.kinds.kinds().any(|k| k == kind)
    }

    /// The TorchServe versions TradeServe registered.
    pub fn registered(&self) -> Vec<Registered> {
        self.registered.lock().values().cloned().collect()
    }

    /// Forget a version the steward unregistered.
    pub fn forget(&self, name: &str, version: &str) {
        self.registered
            .lock()
            .remove(&(name.to_owned(), version.to_owned()));
    }

    fn folder(&self, m: &LoadedModel) -> PathBuf {
        match &self.folders {
            Folders::Bundled(root) => root.join(m.info.role.as_str()).join(&m.info.version),
            Folders::Cache(cache) => cache.dir(&m.info.name, &m.info.version),
        }
    }

    /// `m` with its remote handle attached, once the version is on its server and answers
    /// its golden vectors there; `m` unchanged when its version is served in process.
    pub async fn provide(&self, mut m: LoadedModel) -> Result<LoadedModel, BackendError> {
        let (role, version) = (m.info.role, m.info.version.clone());
        let remote = match self.kind(role, &version) {
            BackendKind::InProcess => {
                m.remote = None;
                return Ok(m);
            }
            BackendKind::KserveV2 => self.kserve.model(role, &version),
            BackendKind::Tfserving => self.tfserving.model(role, &version),
            BackendKind::Torchserve => {
                let folder = self.folder(&m);
                let ensured = self
                    .torchserve
                    .ensure(role, &version, &folder)
                    .await
                    .map_err(|cause| BackendError::TorchServe {
                        role,
                        version: version.clone(),
                        cause,
                    })?;
                if ensured == Ensured::Registered {
                    let name = self.torchserve.name(role, &version);
                    tracing::info!(%role, %version, model = %name, "registered on TorchServe");
                    self.registered.lock().insert(
                        (name.clone(), version.clone()),
                        Registered {
                            role,
                            name,
                            version: version.clone(),
                        },
                    );
                }
                self.torchserve.model(role, &version)
            }
        };
        let remote = match self.batching {
            Some(batching) => Arc::new(Batcher::new(remote, batching)) as Arc<dyn RemoteModel>,
            None => remote,
        };
        self.verify(&m, remote.as_ref()).await?;
        m.remote = Some(Arc::new(Breaker::new(remote, self.breaker.clone())));
        Ok(m)
    }

    /// Every model of `set` through [`Self::provide`].
    pub async fn provide_set(&self, set: ModelSet) -> Result<ModelSet, BackendError> {
        let [r, m, bull, bear, side] = set.models().map(Clone::clone);
        Ok(ModelSet::new(
            self.provide(r).await?,
            self.provide(m).await?,
            [
                self.provide(bull).await?,
                self.provide(bear).await?,
                self.provide(side).await?,
            ],
        ))
    }

    /// The golden vectors of `m`'s folder through `remote`, within [`REMOTE_TOLERANCE`].
    async fn verify(&self, m: &LoadedModel, remote: &dyn RemoteModel) -> Result<(), BackendError> {
        let (role, version) = (m.info.role, m.info.version.clone());
        let endpoint = remote.backend().endpoint.clone();
        let golden = self.folder(m).join("golden.json");
        let started = Instant::now();
        let worst = verify_golden(remote, &golden, self.verify_timeout)
            .await
            .map_err(|cause| BackendError::Verification {
                role,
                version: version.clone(),
                endpoint: endpoint.clone(),
                cause,
            })?;
        if worst > REMOTE_TOLERANCE {
            return Err(BackendError::Mismatch {
                role,
                version,
                endpoint,
                worst,
            });
        }
        tracing::info!(%role, %version, %endpoint, max_diff = worst, ms = started.elapsed().as_secs_f64() * 1e3, "remote backend verified");
        Ok(())
    }
}
