//! Resolving each role's alias in the registry and turning the answer into a model set.
//!
//! [`MlflowRegistry::resolve`] asks MLflow which version each role's alias points at;
//! [`MlflowRegistry::fetch`] makes sure those folders are in the disk cache;
//! [`MlflowRegistry::load_set`] (blocking: ONNX compilation) loads and verifies them from the
//! cache. Nothing here touches the active set: the caller swaps it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradeserve_core::model_set::{LoadedModel, ModelSet};
use tradeserve_core::types::{Role, Specialist};

use crate::mlflow::cache::{CacheError, ModelCache};
use crate::mlflow::client::{MlflowClient, MlflowError};
use crate::mlflow::location::resolve_source;
use crate::model_dir::{ModelLoadError, load_model_dir};

/// Which registered model and alias serve a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpec {
    pub role: Role,
    pub name: String,
    pub alias: String,
}

/// One role's alias, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedModel {
    pub name: String,
    pub alias: String,
    pub version: String,
    /// Path of the model folder under the artifact proxy.
    pub artifact_path: String,
}

/// Every role's alias, resolved at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resolution {
    pub models: BTreeMap<Role, ResolvedModel>,
}

impl Resolution {
    /// `role → version`, for logs and comparisons.
    pub fn versions(&self) -> BTreeMap<Role, String> {
        self.models
            .iter()
            .map(|(r, m)| (*r, m.version.clone()))
            .collect()
    }
}

/// Why a model set could not come from the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Load(#[from] ModelLoadError),
    #[error("{role}: cached digest {cached} differs from the loaded file's {loaded}")]
    Digest {
        role: Role,
        cached: String,
        loaded: String,
    },
    #[error("no resolution for role {0}")]
    Missing(Role),
}

impl RegistryError {
    /// True when MLflow itself was the problem and a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Mlflow(e) | RegistryError::Cache(CacheError::Mlflow(e)) => {
                e.is_transient()
            }
            _ => false,
        }
    }
}

/// The registry as a source of model sets.
#[derive(Debug, Clone)]
pub struct MlflowRegistry {
    client: MlflowClient,
    cache: ModelCache,
    specs: Vec<RoleSpec>,
}

impl MlflowRegistry {
    pub fn new(client: MlflowClient, cache: ModelCache, specs: Vec<RoleSpec>) -> MlflowRegistry {
        MlflowRegistry {
            client,
            cache,
            specs,
        }
    }

    pub fn client(&self) -> &MlflowClient {
        &self.client
    }

    pub fn cache(&self) -> &ModelCache {
        &self.cache
    }

    /// Ask MLflow where every alias points now.
    pub async fn resolve(&self) -> Result<Resolution, MlflowError> {
        let mut models = BTreeMap::new();
        for spec in &self.specs {
            let version = self
                .client
                .version_by_alias(&spec.name, &spec.alias)
                .await?;
            let artifact_path = resolve_source(&self.client, &version).await?;
            models.insert(
                spec.role,
                ResolvedModel {
                    name: spec.name.clone(),
                    alias: spec.alias.clone(),
                    version: version.version,
                    artifact_path,
                },
            );
        }
        Ok(Resolution { models })
    }

    /// The registered model and alias of a role.
    pub fn spec(&self, role: Role) -> Option<&RoleSpec> {
        self.specs.iter().find(|s| s.role == role)
    }

    /// Resolve explicit versions (an experiment's or a rollout's), not aliases. The alias
    /// field of each answer is empty.
    pub async fn resolve_versions(
        &self,
        wanted: &BTreeMap<Role, String>,
    ) -> Result<Resolution, RegistryError> {
        let mut models = BTreeMap::new();
        for (role, version) in wanted {
            let spec = self.spec(*role).ok_or(RegistryError::Missing(*role))?;
            let v = self.client.model_version(&spec.name, version).await?;
            let artifact_path = resolve_source(&self.client, &v).await?;
            models.insert(
                *role,
                ResolvedModel {
                    name: spec.name.clone(),
                    alias: String::new(),
                    version: v.version,
                    artifact_path,
                },
            );
        }
        Ok(Resolution { models })
    }

    /// Download every version of `resolution` that is not cached yet.
    pub async fn fetch(&self, resolution: &Resolution) -> Result<(), RegistryError> {
        for m in resolution.models.values() {
            self.cache
                .fetch(&self.client, &m.name, &m.version, &m.artifact_path)
                .await?;
        }
        Ok(())
    }

    /// Load and verify one role of `resolution` from the cache. Blocking.
    pub fn load_one(
        &self,
        role: Role,
        resolution: &Resolution,
    ) -> Result<LoadedModel, RegistryError> {
        let m = resolution
            .models
            .get(&role)
            .ok_or(RegistryError::Missing(role))?;
        let dir = self.cache.dir(&m.name, &m.version);
        let source = format!("models:/{}/{}", m.name, m.version);
        let mut loaded = load_model_dir(&dir, role, source)?;
        match self.cache.cached_digest(&m.name, &m.version) {
            Some(cached) if cached == loaded.info.sha256 => {}
            Some(cached) => {
                return Err(RegistryError::Digest {
                    role,
                    cached,
                    loaded: loaded.info.sha256,
                });
            }
            None => return Err(RegistryError::Missing(role)),
        }
        // The registry's version number is the truth; the folder's metadata may predate it.
        loaded.info.version = m.version.clone();
        loaded.info.name = m.name.clone();
        loaded.info.alias = (!m.alias.is_empty()).then(|| m.alias.clone());
        Ok(loaded)
    }

    /// Load and verify a whole set from the cache. Blocking: call off the async workers.
    pub fn load_set(&self, resolution: &Resolution) -> Result<ModelSet, RegistryError> {
        Ok(ModelSet::new(
            self.load_one(Role::RegimeDetector, resolution)?,
            self.load_one(Role::MetaController, resolution)?,
            [
                self.load_one(Specialist::Bull.role(), resolution)?,
                self.load_one(Specialist::Bear.role(), resolution)?,
                self.load_one(Specialist::Sideways.role(), resolution)?,
            ],
        ))
    }
}
