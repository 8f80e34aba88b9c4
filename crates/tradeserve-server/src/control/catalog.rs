//! Every model version the control plane can route to, loaded once and shared.
//!
//! Experiments and rollouts name versions; before a change is stored, the catalog loads and
//! verifies each version (bundled folder, or MLflow download into the disk cache) on a
//! blocking thread, so a missing or broken version is refused at the API, never discovered
//! by a request. Building a routing snapshot then only composes already-loaded models.
//!
//! Where versions come from is a [`ModelProvider`]: the bundled folder (here) or the MLflow
//! registry (beside the registry manager); the catalog and the control plane know only the
//! trait.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tradeserve_core::model_set::{LoadedModel, ModelSet};
use tradeserve_core::ports::BoxFuture;
use tradeserve_core::types::{Role, Specialist};
use tradeserve_models::BundledModels;
use tradeserve_models::remote::backends::RemoteBackends;

/// Where model versions come from, and where the champion lives.
pub trait ModelProvider: Send + Sync {
    /// Load and verify each version of `missing` (off the async threads).
    fn load(
        &self,
        missing: BTreeMap<Role, String>,
    ) -> BoxFuture<'_, Result<Vec<LoadedModel>, CatalogError>>;

    /// Whether the champion a completed rollout leaves is the control state's (bundled
    /// models), rather than the provider's own (MLflow: the aliases, moved by
    /// [`ModelProvider::promote`]).
    fn champion_in_control(&self) -> bool;

    /// Make `candidate` the champion at the source, where `current` serves now (MLflow: move
    /// each changed role's alias). Nothing to do where [`ModelProvider::champion_in_control`].
    fn promote<'a>(
        &'a self,
        candidate: &'a BTreeMap<Role, String>,
        current: &'a BTreeMap<Role, String>,
    ) -> BoxFuture<'a, Result<(), PromoteError>>;
}

/// The bundled folder: versions on disk, the champion in the control state.
impl ModelProvider for BundledModels {
    fn load(
        &self,
        missing: BTreeMap<Role, String>,
    ) -> BoxFuture<'_, Result<Vec<LoadedModel>, CatalogError>> {
        let bundled = self.clone();
        let wanted = missing
            .into_iter()
            .map(|(r, v)| (r, v.clone(), v))
            .collect();
        Box::pin(load_blocking(wanted, move |role, version: &String| {
            bundled.load(role, version)
        }))
    }

    fn champion_in_control(&self) -> bool {
        true
    }

    fn promote<'a>(
        &'a self,
        _: &'a BTreeMap<Role, String>,
        _: &'a BTreeMap<Role, String>,
    ) -> BoxFuture<'a, Result<(), PromoteError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Load each `(role, version, source)` with `load` on a blocking thread (models are read and
/// verified from disk); a version that fails is that version's [`CatalogError::Unknown`].
pub async fn load_blocking<T, E>(
    wanted: Vec<(Role, String, T)>,
    load: impl Fn(Role, &T) -> Result<LoadedModel, E> + Send + 'static,
) -> Result<Vec<LoadedModel>, CatalogError>
where
    T: Send + 'static,
    E: std::fmt::Display,
{
    tokio::task::spawn_blocking(move || {
        wanted
            .iter()
            .map(|(role, version, source)| {
                load(*role, source).map_err(|e| CatalogError::Unknown {
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

/// Why a provider could not make a candidate the champion: what it was moving (an alias, as
/// `name@alias`) and the source's answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct PromoteError {
    pub what: String,
    pub cause: String,
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
    provider: Arc<dyn ModelProvider>,
    remote: Option<Arc<RemoteBackends>>,
    loaded: Mutex<HashMap<(Role, String), LoadedModel>>,
}

impl ModelCatalog {
    pub fn new(
        provider: Arc<dyn ModelProvider>,
        remote: Option<Arc<RemoteBackends>>,
    ) -> ModelCatalog {
        ModelCatalog {
            provider,
            remote,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn provider(&self) -> &dyn ModelProvider {
        self.provider.as_ref()
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
        let models = self.provider.load(missing).await?;
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
