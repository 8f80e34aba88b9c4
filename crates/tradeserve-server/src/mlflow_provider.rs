//! The MLflow registry as the control plane's [`ModelProvider`]: a version an experiment or a
//! rollout names is resolved, downloaded into the disk cache and loaded from there; a
//! completed rollout moves each role's alias, since with MLflow the aliases say what the
//! champion is.

use std::collections::BTreeMap;

use tradeserve_core::model_set::LoadedModel;
use tradeserve_core::ports::BoxFuture;
use tradeserve_core::types::Role;
use tradeserve_models::mlflow::registry::RegistryError;

use crate::control::catalog::{CatalogError, ModelProvider, PromoteError, load_blocking};
use crate::registry::RegistryManager;

impl ModelProvider for RegistryManager {
    fn load(
        &self,
        missing: BTreeMap<Role, String>,
    ) -> BoxFuture<'_, Result<Vec<LoadedModel>, CatalogError>> {
        Box::pin(load(self, missing))
    }

    fn champion_in_control(&self) -> bool {
        false
    }

    fn promote<'a>(
        &'a self,
        candidate: &'a BTreeMap<Role, String>,
        current: &'a BTreeMap<Role, String>,
    ) -> BoxFuture<'a, Result<(), PromoteError>> {
        Box::pin(async move {
            let registry = self.registry();
            for (role, version) in candidate {
                if current.get(role) == Some(version) {
                    continue;
                }
                let Some(spec) = registry.spec(*role) else {
                    continue;
                };
                registry
                    .client()
                    .set_alias(&spec.name, &spec.alias, version)
                    .await
                    .map_err(|e| PromoteError {
                        what: format!("{}@{}", spec.name, spec.alias),
                        cause: e.to_string(),
                    })?;
                tracing::info!(name = %spec.name, alias = %spec.alias, %version, "alias moved by a completed rollout");
            }
            Ok(())
        })
    }
}

/// Resolve and download each version, then load them all on a blocking thread.
async fn load(
    manager: &RegistryManager,
    missing: BTreeMap<Role, String>,
) -> Result<Vec<LoadedModel>, CatalogError> {
    let registry = manager.registry();
    let mut resolutions = Vec::new();
    for (role, version) in &missing {
        let classify = |e: RegistryError| {
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
    load_blocking(resolutions, move |role, resolution| {
        registry.load_one(role, resolution)
    })
    .await
}
