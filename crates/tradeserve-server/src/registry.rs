//! Keeping the active model set in step with the MLflow registry.
//!
//! [`RegistryManager::reload`] resolves every role's alias; when the answer differs from what
//! is serving, it downloads the new folders into the disk cache, loads and verifies the whole
//! set on a blocking thread (off the request path), and only then swaps it in atomically. The
//! set it replaces stays resident for instant rollback. A broken version is refused (counted,
//! logged once, remembered so the poller does not retry it every interval) and the old set
//! keeps serving. MLflow being down is reported in metrics and `/health/ready`, and retried with
//! backoff by [`poll`]. Reloads are serialized by an async mutex: it is held across the
//! download and load awaits on purpose, and never touched by a request.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Serialize;
use time::OffsetDateTime;
use tradeserve_core::ModelSet;
use tradeserve_core::types::Role;
use tradeserve_models::mlflow::registry::{RegistryError, Resolution};
use tradeserve_models::mlflow::{MlflowRegistry, ModelCache};

use crate::metrics::Metrics;
use tradeserve_models::remote::backends::{BackendError, RemoteBackends};

/// What the registry manager keeps up to date: the champion model set being served, and the
/// metrics it reports to. The service's state implements it; the manager needs nothing else.
pub trait Serving: Send + Sync {
    fn champion(&self) -> Option<Arc<ModelSet>>;
    fn set_champion(&self, set: Arc<ModelSet>);
    fn metrics(&self) -> &Metrics;
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The aliases point where they did; nothing changed.
    Unchanged { versions: BTreeMap<Role, String> },
    /// A new set is serving.
    Swapped {
        from: BTreeMap<Role, String>,
        to: BTreeMap<Role, String>,
    },
}

/// Why a reload did not swap.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReloadError {
    #[error("model registry unavailable: {0}")]
    Unavailable(String),
    #[error("new model set refused, the current one keeps serving: {0}")]
    Refused(String),
}

/// Registry health, for `/health/ready` and `/api/v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RegistryStatus {
    pub reachable: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// Owns the registry side of the active model set.
pub struct RegistryManager {
    registry: MlflowRegistry,
    /// What is serving, as resolved; also serializes reloads.
    current: tokio::sync::Mutex<Option<Resolution>>,
    /// A resolution that failed verification; not retried until the aliases move again.
    refused: Mutex<Option<Resolution>>,
    /// The set before the last swap, kept loaded for instant rollback.
    pub previous: ArcSwapOption<ModelSet>,
    status: Mutex<RegistryStatus>,
    pub poll_interval: Duration,
    /// Remote backends for the roles and versions configured remote.
    remote: Option<Arc<RemoteBackends>>,
}

impl RegistryManager {
    pub fn new(registry: MlflowRegistry, poll_interval: Duration) -> RegistryManager {
        RegistryManager {
            registry,
            current: tokio::sync::Mutex::new(None),
            refused: Mutex::new(None),
            previous: ArcSwapOption::empty(),
            status: Mutex::new(RegistryStatus::default()),
            poll_interval,
            remote: None,
        }
    }

    /// Serve the roles and versions `remote` is configured for from their remote backends.
    pub fn with_remote(mut self, remote: Option<Arc<RemoteBackends>>) -> RegistryManager {
        self.remote = remote;
        self
    }

    /// `set` with its remote roles provided (on their servers and verified there).
    pub async fn provide(&self, set: ModelSet) -> Result<ModelSet, BackendError> {
        match &self.remote {
            Some(remote) => remote.provide_set(set).await,
            None => Ok(set),
        }
    }

    pub fn status(&self) -> RegistryStatus {
        self.status.lock().clone()
    }

    pub fn registry(&self) -> &MlflowRegistry {
        &self.registry
    }

    pub fn tracking_uri(&self) -> &str {
        self.registry.client().tracking_uri()
    }

    /// Record a poll: `failed` is why it failed, `None` when it succeeded.
    fn set_status(&self, metrics: &Metrics, failed: Option<String>) {
        let mut s = self.status.lock();
        match failed {
            None => {
                s.reachable = true;
                s.last_success = Some(OffsetDateTime::now_utc());
                s.last_error = None;
            }
            Some(e) => {
                s.reachable = false;
                s.last_error = Some(e);
            }
        }
        metrics.registry_up.set(i64::from(s.reachable));
    }

    /// Start-up without MLflow: load the last resolution from the disk cache. Blocking.
    pub fn load_from_cache(&self) -> Option<(Resolution, ModelSet)> {
        let resolution: Resolution = self.registry.cache().load_resolution()?;
        match self.registry.load_set(&resolution) {
            Ok(set) => Some((resolution, set)),
            Err(e) => {
                tracing::error!(error = %e, "cached models do not load");
                None
            }
        }
    }

    /// Record what is serving after a start from the cache.
    pub async fn adopt(&self, resolution: Resolution) {
        *self.current.lock().await = Some(resolution);
    }

    /// Where the aliases point now; the registry's status and counters say how it went.
    async fn resolve(&self, metrics: &Metrics) -> Result<Resolution, ReloadError> {
        match self.registry.resolve().await {
            Ok(r) => {
                self.set_status(metrics, None);
                Ok(r)
            }
            Err(e) if e.is_transient() => {
                let message = e.to_string();
                self.set_status(metrics, Some(message.clone()));
                metrics.model_reloads_unavailable.inc();
                Err(ReloadError::Unavailable(message))
            }
            Err(e) => {
                // MLflow answered, but an alias or version is missing: a refusal, not an outage.
                self.set_status(metrics, None);
                metrics.model_reloads_refused.inc();
                Err(ReloadError::Refused(e.to_string()))
            }
        }
    }

    /// Re-resolve the aliases now and swap in a new set if they moved.
    pub async fn reload(&self, state: &dyn Serving) -> Result<ReloadOutcome, ReloadError> {
        let metrics = state.metrics();
        let mut current = self.current.lock().await;
        let resolution = self.resolve(metrics).await?;
        let serving = state.champion();
        if serving.is_some() && current.as_ref() == Some(&resolution) {
            metrics.model_reloads_unchanged.inc();
            return Ok(ReloadOutcome::Unchanged {
                versions: resolution.versions(),
            });
        }
        let already_refused = self.refused.lock().as_ref() == Some(&resolution);
        if already_refused {
            return Err(ReloadError::Refused(format!(
                "versions {:?} were refused before",
                resolution.versions()
            )));
        }
        let set = match self.fetch_and_load(&resolution).await {
            Ok(set) => set,
            Err(Failure::Transient(message)) => {
                self.set_status(metrics, Some(message.clone()));
                metrics.model_reloads_unavailable.inc();
                return Err(ReloadError::Unavailable(message));
            }
            Err(Failure::NotServable(message)) => {
                // A model server that does not answer (yet): refused now, tried again at the
                // next poll rather than remembered.
                tracing::warn!(error = %message, versions = ?resolution.versions(), "new model set not servable by its remote backend yet; the current set keeps serving");
                metrics.model_reloads_refused.inc();
                return Err(ReloadError::Refused(message));
            }
            Err(Failure::Refused(message)) => {
                tracing::error!(error = %message, versions = ?resolution.versions(), "new model set refused; the current set keeps serving");
                metrics.model_reloads_refused.inc();
                metrics.model_load_failures.inc();
                *self.refused.lock() = Some(resolution);
                return Err(ReloadError::Refused(message));
            }
        };
        let from = current
            .as_ref()
            .map(Resolution::versions)
            .unwrap_or_default();
        let to = resolution.versions();
        if let Err(e) = self.registry.cache().save_resolution(&resolution) {
            tracing::warn!(error = %e, "cannot record the resolution in the model cache");
        }
        self.previous.store(serving);
        state.set_champion(Arc::new(set));
        *current = Some(resolution);
        metrics.model_reloads_swapped.inc();
        tracing::info!(?from, ?to, "model set swapped");
        Ok(ReloadOutcome::Swapped { from, to })
    }
}

enum Failure {
    /// MLflow did not answer.
    Transient(String),
    /// The version is broken: remembered, not retried until the aliases move.
    Refused(String),
    /// Its remote backend did not answer: retried at the next poll.
    NotServable(String),
}

impl RegistryManager {
    /// Download what is missing, then load and verify on a blocking thread.
    async fn fetch_and_load(&self, resolution: &Resolution) -> Result<ModelSet, Failure> {
        let classify = |e: RegistryError| {
            if e.is_transient() {
                Failure::Transient(e.to_string())
            } else {
                Failure::Refused(e.to_string())
            }
        };
        self.registry.fetch(resolution).await.map_err(classify)?;
        let registry = self.registry.clone();
        let r = resolution.clone();
        let set = match tokio::task::spawn_blocking(move || registry.load_set(&r)).await {
            Ok(loaded) => loaded.map_err(classify)?,
            Err(e) => return Err(Failure::Refused(format!("model loading task failed: {e}"))),
        };
        self.provide(set).await.map_err(|e| {
            if e.is_transient() {
                Failure::NotServable(e.to_string())
            } else {
                Failure::Refused(e.to_string())
            }
        })
    }
}

/// Re-resolve every `poll_interval`; after a failure retry sooner (1 s, doubling, up to the
/// interval). Start-up has just resolved, so the first check waits — 1 s when nothing could be
/// loaded, a full interval otherwise. Runs until the task is aborted at shutdown.
pub async fn poll(state: Arc<dyn Serving>, manager: Arc<RegistryManager>) {
    let first_retry = Duration::from_secs(1).min(manager.poll_interval);
    let mut backoff = first_retry;
    let mut delay = if state.champion().is_none() {
        first_retry
    } else {
        manager.poll_interval
    };
    loop {
        tokio::time::sleep(delay).await;
        delay = match manager.reload(state.as_ref()).await {
            Ok(_) => {
                backoff = first_retry;
                manager.poll_interval
            }
            Err(ReloadError::Refused(_)) if state.champion().is_none() => {
                // Nothing serves: keep asking at the fast rate until the registry offers a
                // version that loads.
                first_retry
            }
            Err(ReloadError::Refused(_)) => {
                backoff = first_retry;
                manager.poll_interval
            }
            Err(ReloadError::Unavailable(e)) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "model registry unavailable; serving the current set");
                let d = backoff;
                backoff = (backoff * 2).min(manager.poll_interval);
                d
            }
        };
    }
}

/// Build the registry side from the `[models.mlflow]` config.
pub fn manager(
    m: &crate::config::MlflowConfig,
) -> Result<RegistryManager, tradeserve_models::mlflow::MlflowError> {
    let client = tradeserve_models::mlflow::MlflowClient::new(
        &m.tracking_uri,
        m.token(),
        m.request_timeout.get(),
    )?;
    Ok(RegistryManager::new(
        MlflowRegistry::new(client, ModelCache::new(&m.cache_dir), m.role_specs()),
        m.poll_interval,
    ))
}
