//! `tradeserve torchserve package`: one verified model folder (MLflow layout) as a TorchServe
//! model archive (`.mar`), built by `torch-model-archiver` with the handler the project ships
//! (`serving/torchserve/handler.py`, compiled into this binary) and the version's golden
//! vectors, which the handler checks when TorchServe loads it.

use std::path::{Path, PathBuf};
use std::process::Command;

use tradeserve_core::types::Role;

use crate::model_dir::{ModelLoadError, load_model_dir};

/// The handler, as shipped in `serving/torchserve/handler.py`.
pub const HANDLER: &str = include_str!("../../../../serving/torchserve/handler.py");

/// What to package.
#[derive(Debug, Clone)]
pub struct PackageSpec<'a> {
    /// A model folder: `MLmodel`, `model.onnx`, and `golden.json` when it has one.
    pub model_dir: &'a Path,
    pub role: Role,
    /// The archive's model name (the name it is registered and called by).
    pub name: &'a str,
    pub version: &'a str,
    /// Where the `.mar` goes.
    pub export_path: &'a Path,
    /// `torch-model-archiver`.
    pub archiver: &'a Path,
}

/// Why no archive was made.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("the model does not verify, so it is not packaged: {0}")]
    Model(ModelLoadError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("torch-model-archiver ({path}) could not run: {why}")]
    Archiver { path: PathBuf, why: ToolError },
}

/// Verify the folder (signature, digest, golden vectors in process), then build
/// `<export_path>/<name>.mar`; returns its path.
pub fn package(spec: &PackageSpec<'_>) -> Result<PathBuf, PackageError> {
    load_model_dir(
        spec.model_dir,
        spec.role,
        format!("file://{}", spec.model_dir.display()),
    )
    .map_err(PackageError::Model)?;
    let work = tempfile_dir()?;
    let handler = work.join("handler.py");
    std::fs::write(&handler, HANDLER)?;
    std::fs::create_dir_all(spec.export_path)?;
    let mut command = Command::new(spec.archiver);
    command
        .arg("--model-name")
        .arg(spec.name)
        .arg("--version")
        .arg(spec.version)
        .arg("--serialized-file")
        .arg(spec.model_dir.join("model.onnx"))
        .arg("--handler")
        .arg(&handler)
        .arg("--export-path")
        .arg(spec.export_path)
        .arg("-f");
    let golden = spec.model_dir.join("golden.json");
    if golden.is_file() {
        command.arg("--extra-files").arg(&golden);
    }
    let out = run_tool(&mut command);
    let _ = std::fs::remove_dir_all(&work);
    out.map_err(|why| PackageError::Archiver {
        path: spec.archiver.to_path_buf(),
        why,
    })?;
    Ok(spec.export_path.join(format!("{}.mar", spec.name)))
}

/// Run a packaging tool to its end: its output, or why it failed (it could not start, or its
/// exit status with the last line it wrote to stderr).
pub(crate) fn run_tool(command: &mut Command) -> Result<std::process::Output, ToolError> {
    let out = command.output().map_err(ToolError::Start)?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    Err(ToolError::Failed {
        status: out.status,
        last: last.unwrap_or_default().trim().to_owned(),
    })
}

/// Why a packaging tool did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Start(std::io::Error),
    /// Its exit status and the last line it wrote to stderr.
    #[error("{status}: {last}")]
    Failed {
        status: std::process::ExitStatus,
        last: String,
    },
}

/// A fresh private folder for the handler copy.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tradeserve-package-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
