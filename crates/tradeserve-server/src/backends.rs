//! Remote backends at start-up: every role `[models.backends]` names as remote gets the handle
//! of the same version on its server, beside the in-process copy loaded and verified as
//! always; before the service listens, each remote role answers the version's golden vectors
//! through the remote path, or the service does not start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tradeserve_core::ModelSet;
use tradeserve_core::model_set::LoadedModel;
use tradeserve_models::remote::{
    BackendKind, Breaker, BreakerConfig, KserveV2, REMOTE_TOLERANCE, TfServing, TorchServe,
    verify_golden,
};

use crate::config::ModelsConfig;

/// Why a remote backend cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot build the HTTP client of {kind}: {why}")]
    Client { kind: &'static str, why: String },
    #[error("{role} v{version} on {endpoint} does not answer its golden vectors: {why}")]
    Verification {
        role: String,
        version: String,
        endpoint: String,
        why: String,
    },
}

/// `set` with each remote role's handle attached (no I/O: calls start with requests).
pub fn attach(set: ModelSet, config: &ModelsConfig) -> Result<ModelSet, BackendError> {
    if !config.backends.any_remote() {
        return Ok(set);
    }
    fn client(kind: &'static str) -> impl Fn(String) -> BackendError {
        move |why| BackendError::Client { kind, why }
    }
    let kserve = KserveV2::new(config.kserve_v2.clone())
        .map_err(|e| e.to_string())
        .map_err(client("kserve_v2"))?;
    let tfserving = TfServing::new(config.tfserving.clone())
        .map_err(|e| e.to_string())
        .map_err(client("tfserving"))?;
    let torchserve = TorchServe::new(config.torchserve.clone())
        .map_err(|e| e.to_string())
        .map_err(client("torchserve"))?;
    let breaker = BreakerConfig {
        failures: config.remote.circuit_failures,
        open_for: config.remote.circuit_open_for,
    };
    let with_backend = |m: &LoadedModel| -> LoadedModel {
        let mut m = m.clone();
        let (role, version) = (m.info.role, m.info.version.as_str());
        let remote = match config.backends.of(role) {
            BackendKind::InProcess => None,
            BackendKind::KserveV2 => Some(kserve.model(role, version)),
            BackendKind::Tfserving => Some(tfserving.model(role, version)),
            BackendKind::Torchserve => Some(torchserve.model(role, version)),
        };
        m.remote = remote.map(|r| {
            Arc::new(Breaker::new(r, breaker.clone()))
                as Arc<dyn tradeserve_core::model_set::RemoteModel>
        });
        m
    };
    Ok(ModelSet::new(
        with_backend(&set.regime_detector),
        with_backend(&set.meta_controller),
        set.specialists.each_ref().map(with_backend),
    ))
}

/// Send each remote role's golden vectors (`<models_dir>/<role>/<version>/golden.json`)
/// through its backend; every answer must be within [`REMOTE_TOLERANCE`].
pub async fn verify(
    set: &ModelSet,
    models_dir: &Path,
    timeout: Duration,
) -> Result<(), BackendError> {
    for m in set.models() {
        let Some(remote) = &m.remote else {
            continue;
        };
        let (role, version) = (m.info.role.as_str(), m.info.version.as_str());
        let golden = models_dir.join(role).join(version).join("golden.json");
        let fail = |why: String| BackendError::Verification {
            role: role.to_owned(),
            version: version.to_owned(),
            endpoint: remote.backend().endpoint.clone(),
            why,
        };
        let worst = verify_golden(remote.as_ref(), &golden, timeout)
            .await
            .map_err(fail)?;
        if worst > REMOTE_TOLERANCE {
            return Err(fail(format!(
                "max difference {worst:e} exceeds {REMOTE_TOLERANCE:e}"
            )));
        }
        tracing::info!(role, version, endpoint = %remote.backend().endpoint, max_diff = worst, "remote backend verified");
    }
    Ok(())
}

/// Verify the champion's remote roles, if it has any.
pub async fn verify_champion(
    champion: Option<Arc<ModelSet>>,
    config: &ModelsConfig,
) -> Result<(), BackendError> {
    match champion {
        Some(set) if set.has_remote() => {
            let dir = crate::config::resolve_path(&config.dir);
            verify(&set, &dir, Duration::from_secs(5)).await
        }
        _ => Ok(()),
    }
}
