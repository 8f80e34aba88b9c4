//! The model set: one loaded model per role, immutable once built.
//!
//! A request reads the active set once (an `ArcSwap` load in the server) and uses only that
//! set, so a swap never mixes versions within one decision.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::ModelError;
use crate::types::{Role, Specialist};

/// One loaded model: a float32 vector in, three probabilities out (batch 1).
pub trait InferenceModel: Send + Sync {
    fn predict(&self, input: &[f32]) -> Result<[f32; 3], ModelError>;

    /// Many rows at once (`rows` is `n × width`, row-major), for explanations. Engines that can
    /// run a batch in one call override this; the default calls [`Self::predict`] per row.
    fn predict_batch(&self, rows: &[f32], width: usize) -> Result<Vec<[f32; 3]>, ModelError> {
        if width == 0 || !rows.len().is_multiple_of(width) {
            return Err(ModelError::InputWidth {
                expected: width,
                got: rows.len(),
            });
        }
        rows.chunks(width).map(|r| self.predict(r)).collect()
    }
}

/// A call to a remote backend in flight.
pub type RemoteCall = Pin<Box<dyn Future<Output = Result<[f32; 3], ModelError>> + Send>>;

/// A batched call to a remote backend in flight: one answer per row, in order.
pub type RemoteRows = Pin<Box<dyn Future<Output = Result<Vec<[f32; 3]>, ModelError>> + Send>>;

/// A model served by another process (an Open Inference Protocol server, TorchServe, TF
/// Serving): called over the network, so asynchronously and within a deadline. The role's
/// verified in-process copy of the same version stays loaded beside it (what explanations,
/// shadow runs and replay run).
pub trait RemoteModel: Send + Sync {
    /// `rows` (`n × width`, row-major) in one call — a batch tensor or a list of instances,
    /// as the server's protocol has it; exactly one answer per row, or an error. Gives up
    /// with [`ModelError::Deadline`] at `deadline`.
    fn infer_rows(&self, rows: Vec<f32>, width: usize, deadline: Instant) -> RemoteRows;

    /// One row (a request's call).
    fn infer(&self, input: Vec<f32>, deadline: Instant) -> RemoteCall {
        let width = input.len();
        let call = self.infer_rows(input, width, deadline);
        Box::pin(async move {
            match call.await?.as_slice() {
                [one] => Ok(*one),
                more => Err(ModelError::BadOutput(
                    more.iter().flatten().copied().collect(),
                )),
            }
        })
    }

    /// Where it is served, for `/health/ready` and `GET /api/v1/models`.
    fn backend(&self) -> &BackendInfo;

    /// Whether calls go through (a circuit breaker says; a bare client always does).
    fn state(&self) -> BackendState {
        BackendState::Closed {
            consecutive_failures: 0,
        }
    }
}

/// A remote backend's circuit: closed (calls go through) or open (they fail at once, or fall
/// back, until a probe succeeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "circuit", rename_all = "snake_case")]
pub enum BackendState {
    /// Calls go through.
    Closed { consecutive_failures: u32 },
    /// Calls fail at once until the next probe.
    Open { consecutive_failures: u32 },
}

/// Which backend serves a role.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendInfo {
    /// `kserve_v2`, `tfserving` or `torchserve`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: &'static str,
    /// The call's URL.
    pub endpoint: String,
    /// The model's name on the server.
    pub model: String,
}

/// Where a model came from and what exactly was loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    pub role: Role,
    /// Registry name, e.g. `tradeserve.bull_specialist`.
    pub name: String,
    /// Registry version, e.g. `"2"`.
    pub version: String,
    /// Registry alias it was resolved through (null for bundled models).
    pub alias: Option<String>,
    /// Where it was loaded from (`file://…` or `models:/…`).
    pub source: String,
    /// sha256 of `model.onnx`.
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub loaded_at: OffsetDateTime,
}

/// A model ready to run, with its provenance.
#[derive(Clone)]
pub struct LoadedModel {
    pub info: ModelInfo,
    /// The in-process engine (always loaded and verified).
    pub model: Arc<dyn InferenceModel>,
    /// Set when the role is served by a remote backend: the request path calls it instead.
    pub remote: Option<Arc<dyn RemoteModel>>,
    /// Training means of the inputs, in input order (the explanation baseline).
    pub input_means: Arc<[f64]>,
    /// The inputs' training distributions (drift monitoring), when the version ships them.
    pub drift_reference: Option<Arc<crate::drift::Reference>>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("info", &self.info)
            .field("remote", &self.remote.as_ref().map(|r| r.backend()))
            .finish_non_exhaustive()
    }
}

/// One version of each of the five roles.
#[derive(Debug, Clone)]
pub struct ModelSet {
    pub regime_detector: LoadedModel,
    pub meta_controller: LoadedModel,
    /// Indexed by [`Specialist::index`].
    pub specialists: [LoadedModel; 3],
    /// Registry versions by role, precomputed for responses and events.
    versions: Arc<BTreeMap<Role, String>>,
}

impl ModelSet {
    pub fn new(
        regime_detector: LoadedModel,
        meta_controller: LoadedModel,
        specialists: [LoadedModel; 3],
    ) -> ModelSet {
        let mut versions = BTreeMap::new();
        versions.insert(Role::RegimeDetector, regime_detector.info.version.clone());
        versions.insert(Role::MetaController, meta_controller.info.version.clone());
        for s in Specialist::ALL {
            versions.insert(s.role(), specialists[s.index()].info.version.clone());
        }
        ModelSet {
            regime_detector,
            meta_controller,
            specialists,
            versions: Arc::new(versions),
        }
    }

    /// The set of one model per role; `Err(role)` names a role `models` lacks.
    pub fn from_roles(mut models: BTreeMap<Role, LoadedModel>) -> Result<ModelSet, Role> {
        let mut take = |role: Role| models.remove(&role).ok_or(role);
        Ok(ModelSet::new(
            take(Role::RegimeDetector)?,
            take(Role::MetaController)?,
            [
                take(Specialist::Bull.role())?,
                take(Specialist::Bear.role())?,
                take(Specialist::Sideways.role())?,
            ],
        ))
    }

    pub fn specialist(&self, s: Specialist) -> &LoadedModel {
        &self.specialists[s.index()]
    }

    /// Registry version of each role.
    pub fn versions(&self) -> &Arc<BTreeMap<Role, String>> {
        &self.versions
    }

    /// Whether any role is served by a remote backend.
    pub fn has_remote(&self) -> bool {
        self.models().iter().any(|m| m.remote.is_some())
    }

    /// Every model with its role, in [`Role::ALL`] order.
    pub fn models(&self) -> [&LoadedModel; 5] {
        [
            &self.regime_detector,
            &self.meta_controller,
            &self.specialists[0],
            &self.specialists[1],
            &self.specialists[2],
        ]
    }
}
