//! The control plane: owns the champion model set, the control state (experiments,
//! rollouts, kill switch) and the routing snapshot built from both.
//!
//! Writers ([`ControlPlane::execute`]) first load any model version the change names (no lock
//! held, so a slow download never delays a rollback), then take an async mutex — held on
//! purpose across the store awaits, never touched by a request — read the latest state from
//! the store, apply the command and compare-and-swap the store; only then is the new routing
//! snapshot published and the audit events emitted. Requests only ever load the published
//! snapshot (one atomic load). Other replicas' writes arrive through
//! [`ControlPlane::refresh`], run by the poller.
//!
//! Measurements of each experiment and rollout stage are recorded here per replica and, with
//! a fleet store, merged over every replica ([`measure`]); the gates judge those ([`gates`]).

mod gates;
use gates::StageTraffic;
mod measure;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use time::OffsetDateTime;
use tradeserve_core::arm_stats::UnitStats;
use tradeserve_core::control::commands::KillSwitch;
use tradeserve_core::control::{Context, ControlEvent};
use tradeserve_core::halt::ActiveHalts;
use tradeserve_core::model_set::ModelSet;
use tradeserve_core::ports::EventSink;
use tradeserve_core::rollout::{GateReport, Stage};
use tradeserve_core::routing::{ExperimentRoute, RolloutRoute, Routing};
use tradeserve_core::types::Role;

use crate::control::catalog::{CatalogError, ModelCatalog};
use crate::control::units::{Units, experiment_key, rollout_key};
use crate::control::{Actor, Command, CommandError, ControlState};
use crate::metrics::ControlMetrics;
use tradeserve_core::ports::{ControlStore, FleetShares, StoreError};

/// Why a control command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Models(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("models are not loaded yet")]
    NotReady,
    #[error("the control state kept changing under this write; retry")]
    Contention,
    #[error("rollout completed, but moving the MLflow alias failed: {0}")]
    AliasMove(String),
}

/// Compare-and-swap attempts before giving up.
const ATTEMPTS: usize = 5;

/// See the module docs.
pub struct ControlPlane {
    pub catalog: ModelCatalog,
    metrics: ControlMetrics,
    writer: Writer,
    served: Served,
    measured: Measurements,
    gating: Gating,
}

/// What writes the control state: the store, the events every change publishes, and the lock
/// that orders this process's writers.
struct Writer {
    store: Arc<dyn ControlStore>,
    events: Arc<dyn EventSink>,
    /// Serializes this process's writers (and refreshes).
    lock: tokio::sync::Mutex<()>,
    /// A kill switch applied locally while the store was down, to store when it is back.
    pending_kill: Mutex<Option<Actor>>,
}

/// What requests read: the state being served, the champion and the routing snapshot.
struct Served {
    view: ArcSwap<ControlState>,
    champion: ArcSwapOption<ModelSet>,
    routing: ArcSwapOption<Routing>,
}

/// This replica's measurements of each unit, and the fleet's ([`measure`]).
struct Measurements {
    /// By unit: `experiment:<id>` or `rollout:<id>:<stage>`.
    units: Arc<Units>,
    /// Where every replica's measurements meet (`None`: this replica's alone).
    fleet: Option<Arc<dyn FleetShares>>,
    /// What was last published of each unit.
    published: Mutex<HashMap<tradeserve_core::fleet::UnitKey, measure::Published>>,
    /// When this replica began measuring.
    started: OffsetDateTime,
}

/// The gates' last verdicts and the active stage's traffic ([`gates`]).
struct Gating {
    /// The last gate evaluation of each rollout (local to this replica).
    reports: Mutex<HashMap<String, GateReport>>,
    /// Whether the active rollout stage's candidate is getting traffic.
    traffic: Mutex<Option<StageTraffic>>,
    /// How long a stage's candidate may see no traffic before it is reported as starved.
    stage_idle_after: std::time::Duration,
    /// What a `backtest` stage runs on (`None`: such a stage waits, saying so).
    offline: Option<Arc<super::backtest::OfflineGate>>,
    /// The judged backtest of each rollout (run once per replica; deterministic).
    backtests: Mutex<HashMap<String, GateReport>>,
}

impl ControlPlane {
    pub fn new(
        store: Arc<dyn ControlStore>,
        catalog: ModelCatalog,
        events: Arc<dyn EventSink>,
        metrics: ControlMetrics,
    ) -> ControlPlane {
        ControlPlane {
            catalog,
            metrics,
            writer: Writer {
                store,
                events,
                lock: tokio::sync::Mutex::new(()),
                pending_kill: Mutex::new(None),
            },
            served: Served {
                view: ArcSwap::from_pointee(ControlState::default()),
                champion: ArcSwapOption::empty(),
                routing: ArcSwapOption::empty(),
            },
            measured: Measurements {
                units: Arc::default(),
                fleet: None,
                published: Mutex::new(HashMap::new()),
                started: OffsetDateTime::now_utc(),
            },
            gating: Gating {
                reports: Mutex::new(HashMap::new()),
                traffic: Mutex::new(None),
                stage_idle_after: std::time::Duration::from_secs(60),
                offline: None,
                backtests: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Merge every replica's measurements through `fleet` (reports and gates judge the fleet).
    pub fn with_fleet(mut self, fleet: Arc<dyn FleetShares>) -> ControlPlane {
        self.measured.fleet = Some(fleet);
        self
    }

    /// Report a rollout stage as starved once its candidate has seen no traffic this long.
    pub fn with_stage_idle_after(mut self, after: std::time::Duration) -> ControlPlane {
        self.gating.stage_idle_after = after;
        self
    }

    /// Judge rollouts' `backtest` stages with `gate`.
    pub fn with_offline_gate(mut self, gate: Arc<super::backtest::OfflineGate>) -> ControlPlane {
        self.gating.offline = Some(gate);
        self
    }

    /// The snapshot a request routes by (`None` until models are loaded).
    pub fn routing(&self) -> Option<Arc<Routing>> {
        self.served.routing.load_full()
    }

    pub fn champion(&self) -> Option<Arc<ModelSet>> {
        self.served.champion.load_full()
    }

    /// The control state being served.
    pub fn view(&self) -> Arc<ControlState> {
        self.served.view.load_full()
    }

    pub fn describe_store(&self) -> String {
        self.writer.store.describe()
    }

    /// When this replica's measurements began.
    pub fn measuring_since(&self) -> OffsetDateTime {
        self.measured.started
    }

    /// The champion's versions (empty before models load).
    pub fn champion_versions(&self) -> BTreeMap<Role, String> {
        self.served
            .champion
            .load()
            .as_ref()
            .map(|m| (**m.versions()).clone())
            .unwrap_or_default()
    }

    /// Every unit's measurements on this replica (shared with the outcome book).
    pub fn units(&self) -> Arc<Units> {
        Arc::clone(&self.measured.units)
    }

    /// This replica's own records of an experiment (the fleet's: [`ControlPlane::measured`]).
    pub fn experiment_stats(&self, id: &str) -> Option<Arc<UnitStats>> {
        self.measured.units.get(&experiment_key(id))
    }

    /// This replica's own records of a rollout stage.
    pub fn rollout_stats(&self, id: &str, stage: Stage) -> Option<Arc<UnitStats>> {
        self.measured.units.get(&rollout_key(id, stage))
    }

    pub fn last_gate(&self, id: &str) -> Option<GateReport> {
        self.gating.reports.lock().get(id).cloned()
    }

    /// A new champion set (start-up or a registry reload): serve it, with the current
    /// experiment and rollout on top.
    pub fn set_champion(&self, set: Arc<ModelSet>) {
        self.catalog.remember(&set);
        self.served.champion.store(Some(set));
        self.rebuild();
    }

    /// Stop serving any model set (not ready). Only tests use it: production never unloads.
    #[doc(hidden)]
    pub fn unload(&self) {
        self.served.champion.store(None);
        self.rebuild();
    }

    /// Compose and publish the routing snapshot from the champion and the current view. No
    /// I/O: a version that is not loaded yet leaves its experiment or rollout unrouted here
    /// (all its traffic on control) until [`ControlPlane::refresh`] loads it.
    fn rebuild(&self) {
        let Some(champion) = self.served.champion.load_full() else {
            self.served.routing.store(None);
            return;
        };
        let view = self.served.view.load();
        let experiment = view.running_experiment().and_then(|e| {
            let with = |v: &String| {
                let versions: BTreeMap<Role, String> = [(e.role, v.clone())].into();
                self.catalog.compose(&champion, &versions).map(Arc::new)
            };
            let route = match (with(&e.control_model_version), with(&e.treatment_model_version)) {
                (Some(c), Some(t)) => Some(ExperimentRoute {
                    id: e.experiment_id.as_str().into(),
                    salt: e.salt.as_str().into(),
                    bucketing: e.bucketing,
                    split: e.traffic_split,
                    sets: [c, t],
                    stats: self.measured.units.get_or_create(&experiment_key(&e.experiment_id)),
                }),
                _ => None,
            };
            if route.is_none() {
                tracing::warn!(experiment = %e.experiment_id, "experiment models not loaded on this replica yet: its traffic stays on control");
            }
            route
        });
        // A backtesting rollout routes nothing: no request sees its candidate yet.
        let routed = view.active_rollout().filter(|r| r.stage != Stage::Backtest);
        let rollout = routed.and_then(|r| {
            let route = self
                .catalog
                .compose(&champion, &r.candidate)
                .map(|candidate| RolloutRoute {
                    id: r.rollout_id.as_str().into(),
                    stage: r.stage,
                    salt: r.salt.as_str().into(),
                    bucketing: r.bucketing,
                    candidate: Arc::new(candidate),
                    stats: self.measured.units.get_or_create(&rollout_key(&r.rollout_id, r.stage)),
                });
            if route.is_none() {
                tracing::warn!(rollout = %r.rollout_id, "rollout models not loaded on this replica yet: its traffic stays on control");
            }
            route
        });
        self.metrics
            .routed(experiment.is_some(), rollout.as_ref().map(|r| r.stage));
        let halts = Arc::new(ActiveHalts::new(&view.halts));
        self.served.routing.store(Some(Arc::new(Routing {
            champion,
            experiment,
            rollout,
            halts: Arc::clone(&halts),
        })));
        // After the snapshot: a gauge that shows a halt means requests already see it.
        self.metrics.halts(&halts);
    }

    /// Every version a state routes to, by role.
    fn wanted(&self, state: &ControlState) -> Vec<BTreeMap<Role, String>> {
        let mut wanted = Vec::new();
        if let Some(e) = state.running_experiment() {
            wanted.push([(e.role, e.control_model_version.clone())].into());
            wanted.push([(e.role, e.treatment_model_version.clone())].into());
        }
        if let Some(r) = state.active_rollout() {
            wanted.push(r.candidate.clone());
        }
        if let Some(c) = self.champion_override(state) {
            wanted.push(c.clone());
        }
        wanted
    }

    /// With bundled models, a completed rollout's versions are the champion; with MLflow the
    /// alias is the truth and this is ignored.
    fn champion_override<'a>(&self, state: &'a ControlState) -> Option<&'a BTreeMap<Role, String>> {
        if self.catalog.provider().champion_in_control() {
            state.champion.as_ref()
        } else {
            None
        }
    }

    async fn load_models(&self, state: &ControlState) -> Result<(), CatalogError> {
        for versions in self.wanted(state) {
            self.catalog.ensure(&versions).await?;
        }
        Ok(())
    }

    /// Serve `state`: swap the champion if a completed rollout changed it, then rebuild.
    fn adopt(&self, state: ControlState) {
        let previous = self.served.view.load();
        if previous.revision != state.revision {
            tracing::info!(
                from = previous.revision,
                to = state.revision,
                "control state changed"
            );
        }
        self.metrics
            .revision
            .set(i64::try_from(state.revision).unwrap_or(i64::MAX));
        let new_champion = self.champion_override(&state).and_then(|versions| {
            let current = self.served.champion.load_full()?;
            if **current.versions() == *versions {
                return None;
            }
            self.catalog.compose(&current, versions)
        });
        self.served.view.store(Arc::new(state));
        match new_champion {
            Some(set) => self.set_champion(Arc::new(set)),
            None => self.rebuild(),
        }
    }

    /// Re-read the store and serve what another replica (or a restart) wrote. Called by the
    /// poller; returns whether the state changed.
    pub async fn refresh(&self) -> Result<bool, PlaneError> {
        // A kill switch applied while the store was down is stored first (other replicas
        // must see it), and nothing stored earlier may undo it meanwhile.
        let pending = self.writer.pending_kill.lock().clone();
        if let Some(actor) = pending {
            self.execute_stored(KillSwitch.into(), &actor).await?;
            *self.writer.pending_kill.lock() = None;
            tracing::info!("kill switch applied during the store outage is now stored");
            return Ok(true);
        }
        let stored = self.store_call(self.writer.store.load()).await?;
        if stored.revision <= self.served.view.load().revision {
            return Ok(false);
        }
        // A new experiment's models load here, off the request path and without the writer
        // lock, so a slow download never delays a local rollback. Rollbacks need no loading.
        if let Err(e) = self.load_models(&stored).await {
            tracing::error!(error = %e, "models of the stored control state do not load; their traffic stays on control");
        }
        let _w = self.writer.lock.lock().await;
        // A local write may have moved past this state meanwhile: never go back.
        if stored.revision <= self.served.view.load().revision {
            return Ok(false);
        }
        self.adopt(stored);
        Ok(true)
    }

    async fn store_call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let r = f.await;
        self.metrics.store_up.set(i64::from(r.is_ok()));
        r
    }

    /// Apply a command: load what it needs, store it (compare-and-swap), serve it, audit it.
    /// The kill switch takes effect on this replica even when the store is down: it is then
    /// applied locally, reported as not persisted, and retried by the poller until stored.
    pub async fn execute(
        &self,
        command: Command,
        actor: &Actor,
    ) -> Result<Arc<ControlState>, PlaneError> {
        let kill = command.is_kill_switch();
        match self.execute_stored(command, actor).await {
            Err(PlaneError::Store(e)) if kill => {
                let _w = self.writer.lock.lock().await;
                let mut local = (*self.served.view.load_full()).clone();
                let events = self.apply(&mut local, KillSwitch.into(), actor)?;
                tracing::error!(error = %e, "control store unavailable: kill switch applied on this replica only; retrying until stored");
                *self.writer.pending_kill.lock() = Some(actor.clone());
                self.adopt(local);
                self.publish(events);
                Ok(self.served.view.load_full())
            }
            other => other,
        }
    }

    /// A kill switch applied on this replica but not stored yet.
    pub fn kill_pending(&self) -> bool {
        self.writer.pending_kill.lock().is_some()
    }

    async fn execute_stored(
        &self,
        command: Command,
        actor: &Actor,
    ) -> Result<Arc<ControlState>, PlaneError> {
        if self.served.champion.load().is_none() {
            return Err(PlaneError::NotReady);
        }
        // Load what the change will route to before taking the writer lock: a slow download
        // (a new experiment's version from MLflow) must not hold up a rollback or the kill
        // switch. Inside the lock the versions are then already loaded.
        let mut preview = (*self.served.view.load_full()).clone();
        if self.apply(&mut preview, command.clone(), actor).is_ok() {
            self.load_models(&preview).await?;
        }
        let _w = self.writer.lock.lock().await;
        for _ in 0..ATTEMPTS {
            let current = self.store_call(self.writer.store.load()).await?;
            let mut next = current.clone();
            let events = self.apply(&mut next, command.clone(), actor)?;
            self.load_models(&next).await?;
            if self
                .store_call(self.writer.store.compare_and_swap(current.revision, &next))
                .await?
            {
                let completed = events
                    .iter()
                    .find_map(ControlEvent::completed_rollout)
                    .map(|r| r.candidate.clone());
                self.adopt(next);
                self.publish(events);
                if let Some(candidate) = completed {
                    self.promote_in_registry(&candidate).await?;
                }
                return Ok(self.served.view.load_full());
            }
            tracing::info!(
                revision = current.revision,
                "control state changed during a write; retrying"
            );
        }
        Err(PlaneError::Contention)
    }

    /// With MLflow: point every role's alias at the completed candidate's version, then serve
    /// the candidate as champion at once (the registry poller finds the same versions later).
    async fn promote_in_registry(
        &self,
        candidate: &BTreeMap<Role, String>,
    ) -> Result<(), PlaneError> {
        let provider = self.catalog.provider();
        if provider.champion_in_control() {
            return Ok(());
        }
        provider
            .promote(candidate, &self.champion_versions())
            .await
            .map_err(|e| PlaneError::AliasMove(e.to_string()))?;
        if let Some(champion) = self.served.champion.load_full()
            && let Some(set) = self.catalog.compose(&champion, candidate)
        {
            self.set_champion(Arc::new(set));
        }
        Ok(())
    }

    /// Apply `command` to `state` as `actor`, now, on the champion serving now.
    fn apply(
        &self,
        state: &mut ControlState,
        command: Command,
        actor: &Actor,
    ) -> Result<Vec<ControlEvent>, CommandError> {
        let champion = self.champion_versions();
        let ctx = Context {
            actor,
            champion: &champion,
            now: OffsetDateTime::now_utc(),
        };
        state.apply(command, &ctx)
    }

    fn publish(&self, events: Vec<ControlEvent>) {
        for e in events {
            let subject = e.subject.as_str();
            self.metrics.changed(subject, e.action.as_str());
            tracing::info!(
                subject,
                id = %e.subject_id,
                action = e.action.as_str(),
                from = e.from.map_or("-", |s| s.as_str()),
                to = e.to.map_or("-", |s| s.as_str()),
                actor = %e.actor,
                reason = %e.reason,
                "control change"
            );
            if let Err(err) = self.writer.events.emit(e.into()) {
                tracing::error!(error = %err, "control event not accepted by the event sink");
            }
        }
    }
}
