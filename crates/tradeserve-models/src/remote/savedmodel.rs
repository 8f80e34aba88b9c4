//! `tradeserve tfserving export`: one verified model folder as a TF Serving model version —
//! `<base>/<name>/<version>/` holding a SavedModel (signature `serving_default`: `features`
//! → `probabilities`) and `assets.extra/golden.json` — written by the exporter the project
//! ships (`serving/tfserving/export.py`, compiled into this binary), which runs under a Python
//! with TensorFlow and ONNX, translates the MLP's ONNX operators, and verifies the SavedModel
//! with the golden vectors through TensorFlow before it renames the version into place.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use tradeserve_core::types::Role;

use crate::model_dir::{ModelLoadError, load_model_dir};
use crate::remote::package::{ToolError, run_tool};

/// The exporter, as shipped in `serving/tfserving/export.py`.
pub const EXPORTER: &str = include_str!("../../../../serving/tfserving/export.py");

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportSpec<'a> {
    pub model_dir: &'a Path,
    pub role: Role,
    /// The model's name under the base path (what TF Serving serves it as).
    pub name: &'a str,
    pub version: &'a str,
    /// TF Serving's model base path.
    pub base: &'a Path,
    /// A Python with `tensorflow` (or `tensorflow-cpu`) and `onnx`.
    pub python: &'a Path,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Exported {
    pub path: PathBuf,
    /// Largest difference from the golden outputs through TensorFlow.
    pub max_diff: f64,
    /// Golden rows checked.
    pub rows: usize,
}

/// Why nothing was exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the model does not verify, so it is not exported: {0}")]
    Model(ModelLoadError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the exporter ({python}) failed: {why}")]
    Exporter { python: PathBuf, why: ToolError },
    #[error("the exporter ({python}) wrote no readable report ({cause}): {stdout}")]
    Report {
        python: PathBuf,
        cause: serde_json::Error,
        stdout: String,
    },
}

/// Verify the folder in process, then run the exporter; returns what it wrote.
pub fn export(spec: &ExportSpec<'_>) -> Result<Exported, ExportError> {
    load_model_dir(
        spec.model_dir,
        spec.role,
        format!("file://{}", spec.model_dir.display()),
    )
    .map_err(ExportError::Model)?;
    let script =
        std::env::temp_dir().join(format!("tradeserve-export-{}.py", uuid::Uuid::now_v7()));
    std::fs::write(&script, EXPORTER)?;
    let out = run_tool(
        Command::new(spec.python)
            .arg(&script)
            .arg(spec.model_dir)
            .arg(spec.base)
            .arg(spec.name)
            .arg(spec.version),
    );
    let _ = std::fs::remove_file(&script);
    let failed = |why: ToolError| ExportError::Exporter {
        python: spec.python.to_path_buf(),
        why,
    };
    let out = out.map_err(failed)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    serde_json::from_str(line.unwrap_or_default()).map_err(|cause| ExportError::Report {
        python: spec.python.to_path_buf(),
        cause,
        stdout: stdout.clone().into_owned(),
    })
}
