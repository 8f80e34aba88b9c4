//! Remote model backends behind the core's `RemoteModel` port: which backend serves each role
//! and version ([`Backends`], `[models.backends]`), the Open Inference Protocol client
//! ([`kserve_v2`]), TF Serving's REST predict client ([`tfserving`]) and SavedModel export
//! ([`savedmodel`]), TorchServe's client ([`torchserve`]), model archives ([`package`]) and
//! management API ([`torchserve_mgmt`]), what HTTP and gRPC backends share ([`http`],
//! [`grpc`]), the circuit
//! breaker every remote role goes through ([`breaker`]), micro-batching of concurrent requests
//! ([`batcher`]), and the check that a remote role answers the golden vectors as the
//! in-process engine does ([`verify_golden`]). [`backends`] makes the versions a service
//! routes to servable on their backends (verified before use), and [`steward`] keeps
//! TorchServe's versions in step with what is routed.

pub mod backends;
pub mod batcher;
pub mod breaker;
pub mod grpc;
pub mod http;
pub mod kserve_v2;
pub mod kserve_v2_grpc;
pub mod package;
pub mod savedmodel;
pub mod steward;
pub mod tfserving;
pub mod torchserve;
pub mod torchserve_grpc;
pub mod torchserve_mgmt;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};
use tradeserve_core::model_set::RemoteModel;
use tradeserve_core::types::Role;

pub use batcher::{BatchConfig, Batcher};
pub use breaker::{Breaker, BreakerConfig};
pub use kserve_v2::{KserveV2, KserveV2Config};
pub use tfserving::{TfServing, TfServingConfig, TfServingForm};
pub use torchserve::{TorchServe, TorchServeConfig};

/// Largest difference between a remote backend's outputs and the golden ones. Inputs and
/// outputs cross the wire as float32 values printed in JSON (exact both ways), so what remains
/// is the engine's own arithmetic: ONNX Runtime on the server against the ONNX Runtime that
/// wrote the golden file, the same bound as for the in-process engine.
pub const REMOTE_TOLERANCE: f32 = crate::model_dir::GOLDEN_TOLERANCE;

/// What serves a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The tract engine in this process (the default).
    #[default]
    InProcess,
    /// An Open Inference Protocol (KServe v2) REST server: KServe, MLServer, Triton.
    KserveV2,
    /// TF Serving's REST predict API (and servers that speak it, such as KServe's v1).
    Tfserving,
    /// TorchServe's inference API, with the project's handler.
    Torchserve,
}

/// Backend per role; a missing role is `in_process`. `versions` overrides it for single
/// versions — `[models.backends.versions.bull_specialist] "1" = "in_process"` keeps v1 in
/// process while the role's other versions are remote (an A/B test of moving a model to a
/// model server).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backends {
    pub regime_detector: BackendKind,
    pub meta_controller: BackendKind,
    pub bull_specialist: BackendKind,
    pub bear_specialist: BackendKind,
    pub sideways_specialist: BackendKind,
    pub versions: BTreeMap<Role, BTreeMap<String, BackendKind>>,
}

impl Backends {
    /// The role's backend for versions without an override.
    pub fn of_role(&self, role: Role) -> BackendKind {
        match role {
            Role::RegimeDetector => self.regime_detector,
            Role::MetaController => self.meta_controller,
            Role::BullSpecialist => self.bull_specialist,
            Role::BearSpecialist => self.bear_specialist,
            Role::SidewaysSpecialist => self.sideways_specialist,
        }
    }

    /// What serves `version` of `role`.
    pub fn of(&self, role: Role, version: &str) -> BackendKind {
        self.versions
            .get(&role)
            .and_then(|v| v.get(version))
            .copied()
            .unwrap_or_else(|| self.of_role(role))
    }

    /// Every backend some role or version is configured with.
    pub fn kinds(&self) -> impl Iterator<Item = BackendKind> + '_ {
        Role::ALL
            .iter()
            .map(|r| self.of_role(*r))
            .chain(self.versions.values().flat_map(|v| v.values().copied()))
    }

    /// Whether anything is served remotely.
    pub fn any_remote(&self) -> bool {
        self.kinds().any(|k| k != BackendKind::InProcess)
    }
}

/// `template` with `{role}`, `{name}` (the registry name) and `{version}` replaced.
pub fn model_name(template: &str, role: Role, version: &str) -> String {
    template
        .replace("{role}", role.as_str())
        .replace("{name}", &role.registry_name())
        .replace("{version}", version)
}

/// The checks every HTTP backend's settings share; `section` names them in the message.
fn validate_common(section: &str, url: &str, model: &str) -> Result<(), InvalidSetting> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{section}.url {url:?} must start with http:// or https://").into());
    }
    if model.is_empty() {
        return Err(format!("{section}.model must not be empty").into());
    }
    Ok(())
}

/// A backend's `grpc_url`: plaintext HTTP/2 (`http://HOST:PORT`). TLS to a model server's gRPC
/// is not built in; REST takes `https://`.
fn validate_grpc_url(section: &str, url: &str) -> Result<(), InvalidSetting> {
    if url.starts_with("https://") {
        return Err(format!(
            "{section}.grpc_url {url:?}: TLS to a model server's gRPC is not supported; use \
             http:// on a private network, or protocol = \"rest\" with an https:// URL"
        )
        .into());
    }
    if !url.starts_with("http://") || url.len() <= "http://".len() {
        return Err(format!(
            "{section}.grpc_url {url:?} must be http://HOST:PORT, e.g. \"http://127.0.0.1:8081\""
        )
        .into());
    }
    Ok(())
}

/// How long a status endpoint may take to answer.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// What a model server last said about one version, as the steward reads it (TorchServe's
/// management API, the Open Inference Protocol's model-ready endpoint, TF Serving's model
/// status) — for `/health/ready` and `GET /api/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ModelStatus {
    /// TorchServe: registered; `ready_workers` of `workers` answer.
    Registered {
        ready_workers: usize,
        workers: usize,
    },
    /// The server says the version is ready.
    Ready,
    /// The server knows the version but says it is not ready.
    NotReady { detail: String },
    /// The server does not have the version.
    Missing,
    /// The server did not answer.
    Unreachable { error: String },
}

impl ModelStatus {
    pub fn is_ready(&self) -> bool {
        match self {
            ModelStatus::Registered { ready_workers, .. } => *ready_workers > 0,
            ModelStatus::Ready => true,
            _ => false,
        }
    }
}

/// Why a remote model failed its golden vectors.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("golden vectors unusable: {0}")]
    File(String),
    #[error("no answer: {0}")]
    Unanswered(tradeserve_core::error::ModelError),
    #[error("{0}")]
    Wrong(String),
}

impl GoldenError {
    /// The server did not answer (down, refusing, too slow): worth retrying, unlike a wrong
    /// answer.
    pub fn is_transient(&self) -> bool {
        use tradeserve_core::error::ModelError;
        matches!(
            self,
            GoldenError::Unanswered(ModelError::Unavailable(_) | ModelError::Deadline)
        )
    }
}

/// Send the golden vectors in `golden_path` through `model` (the remote path, one row per
/// call like a request) and return the largest difference from the golden outputs. `Err`
/// says why a row got no answer or the file is unusable.
pub async fn verify_golden(
    model: &dyn RemoteModel,
    golden_path: &Path,
    timeout: Duration,
) -> Result<f32, GoldenError> {
    #[derive(Deserialize)]
    struct Golden {
        inputs: Vec<Vec<f32>>,
        outputs: Vec<Vec<f32>>,
    }
    let text = tokio::fs::read(golden_path)
        .await
        .map_err(|e| GoldenError::File(format!("{}: {e}", golden_path.display())))?;
    let golden: Golden =
        serde_json::from_slice(&text).map_err(|e| GoldenError::File(e.to_string()))?;
    if golden.inputs.is_empty() || golden.inputs.len() != golden.outputs.len() {
        return Err(GoldenError::File(
            "golden inputs and outputs must be non-empty and of equal length".into(),
        ));
    }
    let mut worst = 0.0f32;
    for (x, want) in golden.inputs.into_iter().zip(golden.outputs) {
        let got = model
            .infer(x, Instant::now() + timeout)
            .await
            .map_err(GoldenError::Unanswered)?;
        if want.len() != 3 {
            return Err(GoldenError::File(format!(
                "golden output has {} values, expected 3",
                want.len()
            )));
        }
        for (a, b) in got.iter().zip(&want) {
            let d = (a - b).abs();
            if d.is_nan() {
                return Err(GoldenError::Wrong("the backend answered NaN".into()));
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}
