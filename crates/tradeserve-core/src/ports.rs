//! Ports: the traits through which the domain reaches the outside world.
//!
//! Each has an embedded implementation (market replay, tract engine, in-process ledger, audit
//! log, control file) and, in production, a real one (feature store, remote engines; Redis's
//! shared ledger, control store and fleet measurements; Kafka).
//! Calls that may do I/O return a boxed future so adapters can be async; embedded adapters
//! return a ready future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::arm_stats::UnitStats;
use crate::control::ControlState;
use crate::error::PredictError;
pub use crate::error::{
    EmitError, FeatureError, FleetError, ModelError, RiskError, StoreError, Unhealthy,
};
use crate::event::Event;
use crate::explain::Explanation;
use crate::fleet::{Awaiting, AwaitingArm, Outgoing, Share, UnitKey};
pub use crate::model_set::InferenceModel;
use crate::model_set::ModelSet;
use crate::risk::{Order, RiskLimits, RiskValidation};
pub use crate::snapshot::{FeatureSnapshot, SymbolCoverage};

/// A boxed, sendable future (what an async trait method returns here).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where features come from.
pub trait FeatureSource: Send + Sync {
    /// Features of `symbol` as of `as_of` (`None` = latest), never using a later bar.
    fn features<'a>(
        &'a self,
        symbol: &'a str,
        as_of: Option<OffsetDateTime>,
    ) -> BoxFuture<'a, Result<FeatureSnapshot, FeatureError>>;

    /// Symbols this source serves, with their time ranges.
    fn coverage(&self) -> Vec<SymbolCoverage>;

    /// The return from the bar at `as_of` to the next one, when this source knows it (the
    /// embedded replay derives experiment outcomes from it). `None` by default.
    fn next_bar_return(&self, _symbol: &str, _as_of: OffsetDateTime) -> Option<f64> {
        None
    }
}

/// Positions and counters the risk checks read, updated atomically with the check.
pub trait RiskLedger: Send + Sync {
    /// Evaluate every check for `order`; if approved, record it, as one atomic step.
    fn check_and_apply<'a>(
        &'a self,
        order: &'a Order<'a>,
        limits: &'a RiskLimits,
    ) -> BoxFuture<'a, Result<RiskValidation, RiskError>>;

    /// Undo an order `check_and_apply` approved and recorded, because the decision was not
    /// returned after all (its event could not be recorded).
    fn revert<'a>(&'a self, order: &'a Order<'a>) -> BoxFuture<'a, ()>;

    /// `Err(reason)` while no order can be checked (readiness reports it).
    fn health(&self) -> Result<(), Unhealthy> {
        Ok(())
    }
}

/// Where decision events go. `emit` never waits on a network or another thread: it appends
/// (the audit log: one `write(2)`) or enqueues, or fails at once, and the sink itself counts
/// and logs every event it could not take. `Ok` means the event is recorded as far as this
/// sink promises before a decision is answered.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event) -> Result<(), EmitError>;

    /// `Err(reason)` while the sink cannot record events (readiness reports it).
    fn health(&self) -> Result<(), Unhealthy> {
        Ok(())
    }
}

/// A decision to re-run on a rollout's candidate after the response (shadow stage). The
/// decision's own event is already recorded; the runner emits a `shadow_result` event.
#[derive(Debug)]
pub struct ShadowJob {
    pub decision_id: uuid::Uuid,
    pub symbol: crate::types::Symbol,
    /// The action that was returned.
    pub action: crate::types::Action,
    pub strategy_override: Option<crate::types::Specialist>,
    pub snapshot: FeatureSnapshot,
    pub rollout: crate::routing::RolloutRef,
    pub candidate: Arc<ModelSet>,
    /// The rollout stage's measurements (the candidate arm records the shadow run).
    pub stats: Arc<UnitStats>,
}

/// Runs shadow candidates off the request path, bounded. `submit` never blocks: when the
/// runner is full it hands the job back (the caller counts it as shed).
pub trait ShadowRunner: Send + Sync {
    #[allow(clippy::result_large_err)]
    fn submit(&self, job: ShadowJob) -> Result<(), ShadowJob>;
}

/// One explanation to compute (see [`crate::explain`]).
#[derive(Debug, Clone)]
pub struct ExplainJob {
    pub models: Arc<ModelSet>,
    pub snapshot: FeatureSnapshot,
    pub strategy_override: Option<crate::types::Specialist>,
    pub action: crate::types::Action,
    /// The request's deadline: what bounds the batched calls to remote roles.
    pub deadline: std::time::Instant,
    /// What a remote role's failure does (as on the decision's own path).
    pub fallback: crate::remote::Fallback,
}

/// Computes explanations. The embedded one runs inline; the server's runs on a bounded pool
/// of blocking threads, so that a few milliseconds of explanation never hold an async
/// worker, and answers `ExplainOverloaded` at once when the pool is full.
pub trait Explainer: Send + Sync {
    fn explain(&self, job: ExplainJob) -> BoxFuture<'_, Result<Explanation, PredictError>>;
}

/// Where the control state lives: a JSON file in embedded mode, Redis in production (so every
/// replica converges). Writes are compare-and-swap on the state's revision, so two writers
/// (two replicas, or an API call racing a gate) never lose each other's change.
pub trait ControlStore: Send + Sync {
    /// The stored state (the default, revision 0, when nothing is stored yet).
    fn load(&self) -> BoxFuture<'_, Result<ControlState, StoreError>>;

    /// Store `next` if the stored revision is still `expected`; `Ok(false)` when another
    /// writer got there first.
    fn compare_and_swap<'a>(
        &'a self,
        expected: u64,
        next: &'a ControlState,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// For logs and `/health/ready`.
    fn describe(&self) -> String;
}

/// Where each replica publishes its records of experiments and rollouts and reads the
/// others' (see [`crate::fleet`]).
pub trait FleetShares: Send + Sync {
    /// This process's id among the replicas (unique to the process: a restart is a new one).
    fn replica(&self) -> &str;

    /// Send these units' shares (one round trip where the store allows).
    fn publish(&self, units: Vec<Outgoing>) -> BoxFuture<'_, Result<(), FleetError>>;

    /// Every replica's last published share of `unit`, with their outcome samples when
    /// `with_samples`.
    fn read<'a>(
        &'a self,
        unit: &'a UnitKey,
        with_samples: bool,
    ) -> BoxFuture<'a, Result<Vec<Share>, FleetError>>;
}

/// Where decisions awaiting an outcome meet the outcomes posted to any replica, so that each
/// is credited exactly once in the fleet.
pub trait FleetOutcomes: Send + Sync {
    /// Make these decisions creditable on every replica.
    fn publish<'a>(&'a self, awaiting: &'a [Awaiting]) -> BoxFuture<'a, Result<(), FleetError>>;

    /// Where a decision made on any replica was measured (`None`: unknown or expired).
    fn lookup(&self, id: uuid::Uuid)
    -> BoxFuture<'_, Result<Option<Vec<AwaitingArm>>, FleetError>>;

    /// Claim the right to credit `id`: true for exactly one caller in the fleet.
    fn claim(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<bool, FleetError>>;
}
