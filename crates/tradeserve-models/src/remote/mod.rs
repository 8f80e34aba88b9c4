//! Remote model backends behind the core's `RemoteModel` port: which backend serves each role
//! ([`Backends`], `[models.backends]`), the Open Inference Protocol client ([`kserve_v2`]), TF
//! Serving's REST predict client ([`tfserving`]), TorchServe's ([`torchserve`]) and its model
//! archives ([`package`]), what HTTP backends share ([`http`]), the
//! circuit breaker every remote role goes through ([`breaker`]), and
//! the check that a remote role answers the golden vectors as the in-process engine does
//! ([`verify_golden`]).

pub mod breaker;
pub mod http;
pub mod kserve_v2;
pub mod package;
pub mod tfserving;
pub mod torchserve;

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tradeserve_core::model_set::RemoteModel;
use tradeserve_core::types::Role;

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

/// Backend per role; a missing role is `in_process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backends {
    pub regime_detector: BackendKind,
    pub meta_controller: BackendKind,
    pub bull_specialist: BackendKind,
    pub bear_specialist: BackendKind,
    pub sideways_specialist: BackendKind,
}

impl Backends {
    pub fn of(&self, role: Role) -> BackendKind {
        match role {
            Role::RegimeDetector => self.regime_detector,
            Role::MetaController => self.meta_controller,
            Role::BullSpecialist => self.bull_specialist,
            Role::BearSpecialist => self.bear_specialist,
            Role::SidewaysSpecialist => self.sideways_specialist,
        }
    }

    /// Whether any role is served remotely.
    pub fn any_remote(&self) -> bool {
        Role::ALL
            .iter()
            .any(|r| self.of(*r) != BackendKind::InProcess)
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
fn validate_common(
    section: &str,
    url: &str,
    model: &str,
    max_in_flight: usize,
) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{section}.url {url:?} must start with http:// or https://"
        ));
    }
    if model.is_empty() {
        return Err(format!("{section}.model must not be empty"));
    }
    if max_in_flight == 0 {
        return Err(format!("{section}.max_in_flight must be at least 1"));
    }
    Ok(())
}

/// Send the golden vectors in `golden_path` through `model` (the remote path, one row per
/// call like a request) and return the largest difference from the golden outputs. `Err`
/// says why a row got no answer or the file is unusable.
pub async fn verify_golden(
    model: &dyn RemoteModel,
    golden_path: &Path,
    timeout: Duration,
) -> Result<f32, String> {
    #[derive(Deserialize)]
    struct Golden {
        inputs: Vec<Vec<f32>>,
        outputs: Vec<Vec<f32>>,
    }
    let text = tokio::fs::read(golden_path)
        .await
        .map_err(|e| format!("{}: {e}", golden_path.display()))?;
    let golden: Golden = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if golden.inputs.is_empty() || golden.inputs.len() != golden.outputs.len() {
        return Err("golden inputs and outputs must be non-empty and of equal length".into());
    }
    let mut worst = 0.0f32;
    for (x, want) in golden.inputs.into_iter().zip(golden.outputs) {
        let got = model
            .infer(x, Instant::now() + timeout)
            .await
            .map_err(|e| e.to_string())?;
        if want.len() != 3 {
            return Err(format!(
                "golden output has {} values, expected 3",
                want.len()
            ));
        }
        for (a, b) in got.iter().zip(&want) {
            let d = (a - b).abs();
            if d.is_nan() {
                return Err("the backend answered NaN".into());
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}
