//! Every model version the control plane can route to, loaded once and shared.
//!
//! Experiments and rollouts name versions; before a change is stored, the catalog loads and
//! verifies each version (bundled folder, or MLflow download into the disk cache) on a
//! blocking thread, so a missing or broken version is refused at the API, never discovered
//! by a request. Building a routing snapshot then only composes already-loaded models.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tradeserve_core::model_set::{LoadedModel, ModelSet};
use tradeserve_core::types::{Role, Specialist};
use tradeserve_models::BundledModels;

use crate::registry::RegistryManager;
use tradeserve_models::remote::backends::RemoteBackends;

/// Where versions come from.
pub enum CatalogSource {
    Bundled(BundledModels),
    Mlflow(Arc<RegistryManager>),
}

/// Why a version could not be made available.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    #[error("{role} version {version}: {why}")]
    Unknown {
        role: Role,
        version: String,
        why: String,
    },
    #[error("model registry unavailable: {0}")]
    Unavailable(String),
    /// The version's remote backend did not answer (down, refusing, too slow): try again.
    #[error("model server unavailable: {0}")]
    BackendUnavailable(String),
    /// The version's remote backend cannot serve it correctly (it is not there and cannot be
    /// registered, or it answers its golden vectors wrongly).
    #[error("model refused: {0}")]
    BackendRefused(String),
}

/// Loaded models by role and version.
pub struct ModelCatalog {
    source: CatalogSource,
    remote: Option<Arc<RemoteBackends>>,
    loaded: Mutex<HashMap<(Role, String), LoadedModel>>,
}

impl ModelCatalog {
    pub fn new(source: CatalogSource, remote: Option<Arc<RemoteBackends>>) -> ModelCatalog {
        ModelCatalog {
            source,
            remote,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn source(&self) -> &CatalogSource {
        &self.source
    }

    /// Keep every model of `set` (the champion) for reuse; the champion's copy of a version
    /// (with its remote backend, when it has one) replaces any other.
    pub fn remember(&self, set: &ModelSet) {
        let mut loaded = self.loaded.lock();
        for m in set.models() {
            loaded.insert((m.info.role, m.info.version.clone()), m.clone());
        }
    }

    pub fn get(&self, role: Role, version: &str) -> Option<LoadedModel> {
        self.loaded.lock().get(&(role, version.to_owned())).cloned()
    }

    /// Load every wanted version not loaded yet.
    pub async fn ensure(&self, wanted: &BTreeMap<Role, String>) -> Result<(), CatalogError> {
        let missing: BTreeMap<Role, String> = wanted
            .iter()
            .filter(|(r, v)| self.get(**r, v).is_none())
            .map(|(r, v)| (*r, v.clone()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let models = match &self.source {
            CatalogSource::Bundled(b) => {
                let b = b.clone();
                tokio::task::spawn_blocking(move || {
                    missing
                        .iter()
                        .map(|(role, version)| {
                            b.load(*role, version).map_err(|e| CatalogError::Unknown {
                                role: *role,
                                version: version.clone(),
                                why: e.to_string(),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(|e| CatalogError::Unavailable(e.to_string()))??
            }
            CatalogSource::Mlflow(manager) => load_from_mlflow(manager, &missing).await?,
        };
        let models = self.provide(models).await?;
        let mut loaded = self.loaded.lock();
        for m in models {
            loaded.insert((m.info.role, m.info.version.clone()), m);
        }
        Ok(())
    }

    /// Each of `models` on its remote backend, when its role and version are served remotely.
    async fn provide(&self, models: Vec<LoadedModel>) -> Result<Vec<LoadedModel>, CatalogError> {
        let Some(remote) = &self.remote else {
            return Ok(models);
        };
        let mut provided = Vec::with_capacity(models.len());
        for m in models {
            provided.push(remote.provide(m).await.map_err(|e| {
                if e.is_transient() {
                    CatalogError::BackendUnavailable(e.to_string())
                } else {
                    CatalogError::BackendRefused(e.to_string())
                }
            })?);
        }
        Ok(provided)
    }

    /// `base` with the roles of `versions` replaced; `None` if one is not loaded.
    pub fn compose(&self, base: &ModelSet, versions: &BTreeMap<Role, String>) -> Option<ModelSet> {
        let pick = |role: Role, current: &LoadedModel| match versions.get(&role) {
            Some(v) if *v != current.info.version => self.get(role, v),
            _ => Some(current.clone()),
        };
        Some(ModelSet::new(
            pick(Role::RegimeDetector, &base.regime_detector)?,
            pick(Role::MetaController, &base.meta_controller)?,
            [
                pick(Specialist::Bull.role(), base.specialist(Specialist::Bull))?,
                pick(Specialist::Bear.role(), base.specialist(Specialist::Bear))?,
                pick(
                    Specialist::Sideways.role(),
                    base.specialist(Specialist::Sideways),
                )?,
            ],
        ))
    }
}

async fn load_from_mlflow(
    manager: &Arc<RegistryManager>,
    missing: &BTreeMap<Role, String>,
) -> Result<Vec<LoadedModel>, CatalogError> {
    let registry = manager.registry();
    let mut resolutions = Vec::new();
    for (role, version) in missing {
        let classify = |e: tradeserve_models::mlflow::registry::RegistryError| {
            if e.is_transient() {
                CatalogError::Unavailable(e.to_string())
            } else {
                CatalogError::Unknown {
                    role: *role,
                    version: version.clone(),
                    why: e.to_string(),
                }
            }
        };
        let one: BTreeMap<Role, String> = [(*role, version.clone())].into();
        let resolution = registry.resolve_versions(&one).await.map_err(classify)?;
        registry.fetch(&resolution).await.map_err(classify)?;
        resolutions.push((*role, version.clone(), resolution));
    }
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || {
        resolutions
            .iter()
            .map(|(role, version, resolution)| {
                registry
                    .load_one(*role, resolution)
                    .map_err(|e| CatalogError::Unknown {
                        role: *role,
                        version: version.clone(),
                        why: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| CatalogError::Unavailable(e.to_string()))?
}
