//! Loading one model folder in MLflow's layout and proving it is fit to serve.
//!
//! Steps, each a distinct load error: read `MLmodel`; check signature, role and input columns
//! against the feature schema; read the ONNX file and record its sha256 (and compare it with
//! the digest training recorded); build the engine; run the folder's golden vectors (the
//! outputs Python's onnxruntime gave) within 1e-5 — which also warms the model up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tradeserve_core::drift::Reference;
use tradeserve_core::model_set::{LoadedModel, ModelInfo};
use tradeserve_core::ports::InferenceModel;
use tradeserve_core::schema::{FEATURES, META_INPUTS};
use tradeserve_core::types::Role;

use crate::engine::EngineError;
use crate::mlmodel::{MlModel, SignatureError};
use crate::onnx::OnnxModel;

/// Largest difference from the golden outputs a model may show.
pub const GOLDEN_TOLERANCE: f32 = 1e-5;

/// Why a model folder was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Signature {
        path: PathBuf,
        cause: SignatureError,
    },
    #[error("{path}: unsafe ONNX file name {name:?} in MLmodel")]
    UnsafeFileName { path: PathBuf, name: String },
    #[error(
        "{path}: sha256 {actual} differs from the recorded {expected} (corrupt or tampered file)"
    )]
    Digest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: {cause}")]
    Engine { path: PathBuf, cause: EngineError },
    #[error("{path}: golden vectors: {message}")]
    Golden { path: PathBuf, message: String },
    #[error("{path}: the training reference does not fit the model: {cause}")]
    Reference { path: PathBuf, cause: String },
    #[error("no version {version} of {role} under {path}")]
    MissingVersion {
        role: Role,
        version: String,
        path: PathBuf,
    },
}

/// Input column names a role's model must declare.
pub fn input_columns(role: Role) -> &'static [&'static str] {
    match role {
        Role::MetaController => &META_INPUTS,
        _ => &FEATURES,
    }
}

#[derive(Deserialize)]
struct Golden {
    inputs: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
}

fn read(path: PathBuf) -> Result<Vec<u8>, ModelLoadError> {
    std::fs::read(&path).map_err(|cause| ModelLoadError::Io { path, cause })
}

/// Largest absolute difference between the model's outputs and the golden ones.
pub fn golden_max_diff(model: &dyn InferenceModel, golden_json: &[u8]) -> Result<f32, String> {
    let golden: Golden = serde_json::from_slice(golden_json).map_err(|e| e.to_string())?;
    if golden.inputs.len() != golden.outputs.len() || golden.inputs.is_empty() {
        return Err("inputs and outputs must be non-empty and of equal length".into());
    }
    // Row by row (the request path) and as one batch (explanations): both must match.
    let width = golden.inputs[0].len();
    let rows: Vec<f32> = golden.inputs.iter().flatten().copied().collect();
    let batch = model
        .predict_batch(&rows, width)
        .map_err(|e| format!("batch: {e}"))?;
    let mut worst = 0.0f32;
    for ((x, want), batched) in golden.inputs.iter().zip(&golden.outputs).zip(&batch) {
        let single = model.predict(x).map_err(|e| e.to_string())?;
        for (a, b) in single.iter().zip(batched) {
            worst = worst.max((a - b).abs());
        }
        let got = single;
        if want.len() != 3 {
            return Err(format!(
                "golden output has {} values, expected 3",
                want.len()
            ));
        }
        for (g, w) in got.iter().zip(want) {
            let d = (g - w).abs();
            if d.is_nan() {
                return Err("model produced NaN".into());
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}

/// The golden inputs of a `golden.json`, row after row (empty when they cannot be read; loading
/// a model folder reports that as a golden-vector error).
pub fn golden_inputs(golden_json: &[u8]) -> Vec<f32> {
    serde_json::from_slice::<Golden>(golden_json)
        .map(|g| g.inputs.into_iter().flatten().collect())
        .unwrap_or_default()
}

/// Check the model against the golden vectors (`golden`, read from `golden_path`), which
/// also warms it up, or, without them, run it once so the first request does not pay for it.
fn verify_golden(
    model: &OnnxModel,
    golden_path: &Path,
    golden: Option<&[u8]>,
    width: usize,
) -> Result<(), ModelLoadError> {
    let failed = |message| ModelLoadError::Golden {
        path: golden_path.to_path_buf(),
        message,
    };
    let Some(golden) = golden else {
        let warm = vec![0.0f32; width];
        return model
            .predict(&warm)
            .map(drop)
            .map_err(|e| failed(e.to_string()));
    };
    let worst = golden_max_diff(model, golden).map_err(failed)?;
    if worst > GOLDEN_TOLERANCE {
        return Err(failed(format!(
            "max difference {worst:e} exceeds {GOLDEN_TOLERANCE:e}"
        )));
    }
    Ok(())
}

/// Load, verify and warm up the model in `dir` for `role`. `source` is recorded as its origin.
pub fn load_model_dir(
    dir: &Path,
    role: Role,
    source: String,
) -> Result<LoadedModel, ModelLoadError> {
    let mlmodel_path = dir.join("MLmodel");
    let text = read(mlmodel_path.clone())?;
    let sig_err = |cause| ModelLoadError::Signature {
        path: mlmodel_path.clone(),
        cause,
    };
    let mlmodel = MlModel::parse(&String::from_utf8_lossy(&text)).map_err(sig_err)?;
    let columns = input_columns(role);
    let meta = mlmodel.check(role.as_str(), columns).map_err(sig_err)?;
    let file = mlmodel.onnx_file().map_err(sig_err)?;
    if file.is_empty() || file.contains('/') || file.contains('\\') || file == ".." || file == "." {
        return Err(ModelLoadError::UnsafeFileName {
            path: mlmodel_path,
            name: file.to_owned(),
        });
    }
    let onnx_path = dir.join(file);
    let bytes = read(onnx_path.clone())?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = &meta.model_sha256
        && *expected != sha256
    {
        return Err(ModelLoadError::Digest {
            path: onnx_path,
            expected: expected.clone(),
            actual: sha256,
        });
    }
    let golden_path = dir.join("golden.json");
    let golden = match golden_path.exists() {
        true => Some(read(golden_path.clone())?),
        false => None,
    };
    let reference = golden.as_deref().map(golden_inputs).unwrap_or_default();
    let model =
        OnnxModel::load(&bytes, "features", columns.len(), &reference).map_err(|cause| {
            ModelLoadError::Engine {
                path: onnx_path.clone(),
                cause,
            }
        })?;
    verify_golden(&model, &golden_path, golden.as_deref(), columns.len())?;
    let drift_reference = load_reference(dir, &sha256, columns)?;
    tracing::info!(%role, version = %meta.version, engine = model.engine(), "model verified");
    Ok(LoadedModel {
        info: ModelInfo {
            role,
            name: role.registry_name(),
            version: meta.version.clone(),
            alias: None,
            source,
            sha256,
            loaded_at: OffsetDateTime::now_utc(),
        },
        model: Arc::new(model),
        remote: None,
        input_means: meta.input_means.clone().into(),
        drift_reference,
    })
}

/// The training reference in `dir` (`reference.json`), checked against the model; `None`
/// when the version ships none (its inputs are then not watched for drift).
fn load_reference(
    dir: &Path,
    sha256: &str,
    columns: &[&str],
) -> Result<Option<Arc<Reference>>, ModelLoadError> {
    let path = dir.join("reference.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = read(path.clone())?;
    let bad = |cause: String| ModelLoadError::Reference {
        path: path.clone(),
        cause,
    };
    let reference: Reference = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    reference
        .validate(sha256, columns)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some(Arc::new(reference)))
}
