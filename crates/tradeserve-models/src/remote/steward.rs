//! The backend steward: every `models.remote.status_interval` it walks the versions the
//! service routes to (champion, the set kept for rollback, experiment arms, rollout candidate)
//! that are served remotely, and
//! - reads each one's status from its server — TorchServe's management API (READY workers:
//!   the health `/ping` does not give), the Open Inference Protocol's model-ready endpoint,
//!   TF Serving's model status — kept for `/health/ready` and `GET /api/v1/models`;
//! - on TorchServe, registers again, and verifies through the inference API, a version a
//!   restarted TorchServe no longer has (when TradeServe can write its model store);
//! - makes the champion's version TorchServe's default for its model name;
//! - unregisters a version TradeServe registered once nothing has routed to it for
//!   `unregister_after` (versions an operator registered are never touched).
//!
//! None of this is on a request's path: requests read the status through a lock held only
//! to copy it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BackendKind, ModelStatus};
use tradeserve_core::ModelSet;
use tradeserve_core::model_set::LoadedModel;
use tradeserve_core::types::Role;

use super::backends::RemoteBackends;

/// The steward's memory between sweeps.
#[derive(Default)]
pub struct Steward {
    /// Status by endpoint (one model version on one server).
    status: parking_lot::Mutex<HashMap<String, ModelStatus>>,
    /// The version last made default, by model name.
    defaults: parking_lot::Mutex<HashMap<String, String>>,
    /// When a version TradeServe registered was first seen unreferenced.
    unreferenced_since: parking_lot::Mutex<HashMap<(String, String), Instant>>,
}

impl Steward {
    /// The last status of the version served at `endpoint` (`None` before the first sweep).
    pub fn status(&self, endpoint: &str) -> Option<ModelStatus> {
        self.status.lock().get(endpoint).cloned()
    }
}

/// The model sets the service may route to now: the champion, and the others (experiment
/// arms, rollout candidate, the set kept for rollback).
#[derive(Default)]
pub struct Routed {
    pub champion: Option<Arc<ModelSet>>,
    pub others: Vec<Arc<ModelSet>>,
}

impl Routed {
    /// Every model of every set, each (role, version) once.
    fn models(&self) -> Vec<LoadedModel> {
        let mut seen = HashSet::new();
        self.champion
            .iter()
            .chain(&self.others)
            .flat_map(|s| s.models().map(Clone::clone))
            .filter(|m| seen.insert((m.info.role, m.info.version.clone())))
            .collect()
    }
}

/// Sweep every `interval` until the task is aborted at shutdown; `routed` says what the
/// service routes to at each sweep.
pub async fn run(
    routed: impl Fn() -> Routed + Send + 'static,
    remote: Arc<RemoteBackends>,
    steward: Arc<Steward>,
    interval: Duration,
) {
    loop {
        sweep(&routed(), &remote, &steward).await;
        tokio::time::sleep(interval).await;
    }
}

/// One pass; see the module docs.
pub async fn sweep(routed: &Routed, remote: &RemoteBackends, steward: &Steward) {
    let models: Vec<LoadedModel> = routed
        .models()
        .into_iter()
        .filter(|m| m.remote.is_some())
        .collect();
    let ts = remote.torchserve();
    let mut live = HashSet::new();
    for m in &models {
        let (role, version) = (m.info.role, m.info.version.as_str());
        let kind = remote.kind(role, version);
        let mut status = remote.status(role, version).await;
        if kind == BackendKind::Torchserve {
            let name = ts.name(role, version);
            live.insert((name.clone(), version.to_owned()));
            if status == ModelStatus::Missing && ts.config().model_store.is_some() {
                status = restore(remote, m, &name).await;
                // A restarted TorchServe has no default either.
                steward.defaults.lock().remove(&name);
            }
        }
        let endpoint = m.remote.as_ref().map(|r| r.backend().endpoint.clone());
        steward
            .status
            .lock()
            .insert(endpoint.unwrap_or_default(), status);
    }
    if !remote.uses(BackendKind::Torchserve) {
        return;
    }
    if let Some(champion) = &routed.champion {
        set_defaults(remote, steward, champion).await;
    }
    unregister_stale(remote, steward, &live).await;
}

/// Register a version TorchServe lost (a restart: its model store is not a registry) and
/// verify it through the inference API again.
async fn restore(remote: &RemoteBackends, m: &LoadedModel, name: &str) -> ModelStatus {
    let (role, version) = (m.info.role, m.info.version.as_str());
    match remote.provide(m.clone()).await {
        Ok(_) => {
            tracing::info!(%role, version, model = name, "TorchServe had lost the version: registered and verified again");
            remote.status(role, version).await
        }
        Err(e) => {
            tracing::warn!(%role, version, error = %e, "TorchServe lost the version and it cannot be registered again yet");
            ModelStatus::Missing
        }
    }
}

/// Make each champion TorchServe version its model name's default (once per change).
async fn set_defaults(remote: &RemoteBackends, steward: &Steward, champion: &ModelSet) {
    let ts = remote.torchserve();
    let wanted: BTreeMap<String, (Role, String)> = champion
        .models()
        .iter()
        .filter(|m| remote.kind(m.info.role, &m.info.version) == BackendKind::Torchserve)
        .map(|m| {
            let name = ts.name(m.info.role, &m.info.version);
            (name, (m.info.role, m.info.version.clone()))
        })
        .collect();
    for (name, (role, version)) in wanted {
        if steward.defaults.lock().get(&name) == Some(&version) {
            continue;
        }
        match ts.management().set_default(&name, &version).await {
            Ok(()) => {
                tracing::info!(%role, %version, model = %name, "TorchServe default version set");
                steward.defaults.lock().insert(name, version);
            }
            Err(e) => {
                tracing::warn!(%role, %version, error = %e, "cannot set the TorchServe default version")
            }
        }
    }
}

/// Unregister what TradeServe registered and nothing has routed to for the grace period.
async fn unregister_stale(
    remote: &RemoteBackends,
    steward: &Steward,
    live: &HashSet<(String, String)>,
) {
    let grace: Duration = remote.torchserve().config().unregister_after;
    let now = Instant::now();
    for r in remote.registered() {
        let key = (r.name.clone(), r.version.clone());
        if live.contains(&key) {
            steward.unreferenced_since.lock().remove(&key);
            continue;
        }
        let since = *steward
            .unreferenced_since
            .lock()
            .entry(key.clone())
            .or_insert(now);
        if now.duration_since(since) < grace {
            continue;
        }
        match remote
            .torchserve()
            .management()
            .unregister(&r.name, &r.version)
            .await
        {
            Ok(()) => {
                tracing::info!(role = %r.role, version = %r.version, model = %r.name, "unregistered from TorchServe: nothing routes to it");
                remote.forget(&r.name, &r.version);
                steward.unreferenced_since.lock().remove(&key);
                if steward.defaults.lock().get(&r.name) == Some(&r.version) {
                    steward.defaults.lock().remove(&r.name);
                }
            }
            Err(e) => {
                tracing::warn!(role = %r.role, version = %r.version, error = %e, "cannot unregister from TorchServe; will retry")
            }
        }
    }
}
