//! Registering a local model folder as a new version in MLflow, over the REST API.
//!
//! Steps: make sure the registered model and the `tradeserve-models` experiment exist; start a
//! run; upload every file of the folder to `<run artifacts>/model/` through the artifact proxy;
//! create a version whose source is `runs:/<run>/model`; finish the run; optionally move an
//! alias to the new version. The folder is checked (MLmodel present, ONNX file present) before
//! anything is uploaded.

use std::path::Path;

use crate::mlflow::client::{MlflowClient, MlflowError};
use crate::mlflow::location::proxy_path;

/// Experiment that holds the runs `publish` creates.
pub const EXPERIMENT: &str = "tradeserve-models";

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{0} is not a model folder: {1}")]
    NotAModel(String, String),
}

/// The registered version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub name: String,
    pub version: String,
    pub run_id: String,
    pub alias: Option<String>,
}

/// Publish `dir` as a new version of `name`; move `alias` to it when given.
pub async fn publish(
    client: &MlflowClient,
    dir: &Path,
    name: &str,
    alias: Option<&str>,
) -> Result<Published, PublishError> {
    let shown = dir.display().to_string();
    let not_model = |why: &str| PublishError::NotAModel(shown.clone(), why.to_owned());
    if !dir.join("MLmodel").is_file() {
        return Err(not_model("no MLmodel file"));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|cause| PublishError::Io {
        path: shown.clone(),
        cause,
    })? {
        let entry = entry.map_err(|cause| PublishError::Io {
            path: shown.clone(),
            cause,
        })?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false)
            && let Some(file) = entry.file_name().to_str()
        {
            files.push(file.to_owned());
        }
    }
    if !files.iter().any(|f| f.ends_with(".onnx")) {
        return Err(not_model("no .onnx file"));
    }
    files.sort();

    client.ensure_registered_model(name).await?;
    let experiment = client.ensure_experiment(EXPERIMENT).await?;
    let (run_id, artifact_uri) = client
        .create_run(&experiment, &format!("publish {name}"))
        .await?;
    let root = proxy_path(&artifact_uri)?;
    for file in &files {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|cause| PublishError::Io {
            path: path.display().to_string(),
            cause,
        })?;
        client
            .upload(&format!("{root}/model/{file}"), bytes)
            .await?;
    }
    let version = client
        .create_model_version(name, &format!("runs:/{run_id}/model"), &run_id)
        .await?;
    client.finish_run(&run_id).await?;
    if let Some(alias) = alias {
        client.set_alias(name, alias, &version.version).await?;
    }
    Ok(Published {
        name: name.to_owned(),
        version: version.version,
        run_id,
        alias: alias.map(str::to_owned),
    })
}
