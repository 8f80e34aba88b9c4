//! `[models]`: which models serve — bundled or from MLflow, the versions, the ONNX engine,
//! and the remote backends that serve some roles and versions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tradeserve_core::bounded::PositiveDuration;
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};
use tradeserve_core::types::Role;
use tradeserve_models::VersionSelection;
use tradeserve_models::remote::BackendKind;

use super::resolve_path;

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
    pub request_timeout: PositiveDuration,
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
            request_timeout: PositiveDuration::secs(5),
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

    pub(super) fn validate(&self) -> Result<(), InvalidSetting> {
        if !(self.tracking_uri.starts_with("http://") || self.tracking_uri.starts_with("https://"))
        {
            return Err(format!(
                "models.mlflow.tracking_uri {:?} must be an http(s) URL",
                self.tracking_uri
            )
            .into());
        }
        if self.poll_interval < Duration::from_millis(100) {
            return Err("models.mlflow.poll_interval must be at least 100ms".into());
        }
        if self.alias.trim().is_empty() {
            return Err("models.mlflow.alias must not be empty".into());
        }
        for key in self.roles.keys() {
            if Role::parse(key).is_none() {
                return Err(format!("models.mlflow.roles.{key} is not a model role").into());
            }
        }
        Ok(())
    }
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

    pub(super) fn validate_backends(&self) -> Result<(), InvalidSetting> {
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
        Ok(())
    }
}
