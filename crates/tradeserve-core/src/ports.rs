//! Ports: the traits through which the domain reaches the outside world.
//!
//! Each has an embedded implementation (market replay, tract engine, in-process ledger, audit
//! log) and, in production, a real one (feature store, remote engines, shared ledger, Kafka).
//! Calls that may do I/O return a boxed future so adapters can be async; embedded adapters
//! return a ready future.

use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;

use std::sync::Arc;

use crate::event::Event;
use crate::model_set::ModelSet;
use crate::risk::{Order, RiskLimits, RiskValidation};
use crate::schema::{FEATURE_WIDTH, HIT_RATES};
use crate::stats::UnitStats;

/// A boxed, sendable future (what an async trait method returns here).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Features of one symbol as of one bar.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSnapshot {
    /// Close time of the bar the features describe (no later bar was used).
    pub as_of: OffsetDateTime,
    /// Last traded price (the bar's close), used for sizing and risk.
    pub price: f64,
    /// Model inputs, in [`crate::schema::FEATURES`] order.
    pub features: [f64; FEATURE_WIDTH],
    /// Strategy hit rates, in [`crate::schema::HIT_RATES`] order.
    pub hit_rates: [f64; HIT_RATES.len()],
}

/// Data a feature source can serve for a symbol.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SymbolCoverage {
    pub symbol: String,
    /// First instant with features.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// Last bar.
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub bars: usize,
}

/// Why features could not be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),
    #[error("{0}")]
    NoData(String),
    #[error("feature source unavailable: {0}")]
    Unavailable(String),
}

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

/// Why a model call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("model input has width {got}, expected {expected}")]
    InputWidth { expected: usize, got: usize },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("model output is not a probability vector: {0:?}")]
    BadOutput(Vec<f32>),
}

/// One loaded model: a float32 vector in, three probabilities out (batch 1).
pub trait InferenceModel: Send + Sync {
    fn predict(&self, input: &[f32]) -> Result<[f32; 3], ModelError>;

    /// Many rows at once (`rows` is `n × width`, row-major), for explanations. Engines that can
    /// run a batch in one call override this; the default calls [`Self::predict`] per row.
    fn predict_batch(&self, rows: &[f32], width: usize) -> Result<Vec<[f32; 3]>, ModelError> {
        if width == 0 || rows.len() % width != 0 {
            return Err(ModelError::InputWidth {
                expected: width,
                got: rows.len(),
            });
        }
        rows.chunks(width).map(|r| self.predict(r)).collect()
    }
}

/// Why the risk ledger could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RiskError {
    #[error("risk ledger unavailable: {0}")]
    Unavailable(String),
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
}

/// Why an event could not be accepted for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("event queue is full")]
    QueueFull,
    #[error("event sink is shut down")]
    Closed,
    /// The event could not be written where it must be before the decision is answered
    /// (audit log or spool): disk full, permissions, I/O error.
    #[error("cannot record the event: {0}")]
    Write(std::io::ErrorKind),
}

/// Where decision events go. `emit` never waits on a network or another thread: it appends
/// (the audit log: one `write(2)`) or enqueues, or fails at once, and the sink itself counts
/// and logs every event it could not take. `Ok` means the event is recorded as far as this
/// sink promises before a decision is answered.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event) -> Result<(), EmitError>;

    /// `Err(reason)` while the sink cannot record events (readiness reports it).
    fn health(&self) -> Result<(), String> {
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
}

/// Computes explanations. The embedded one runs inline; the server's runs on a bounded pool
/// of blocking threads, so that a few milliseconds of explanation never hold an async
/// worker, and answers `ExplainOverloaded` at once when the pool is full.
pub trait Explainer: Send + Sync {
    fn explain(
        &self,
        job: ExplainJob,
    ) -> BoxFuture<'_, Result<crate::explain::Explanation, crate::pipeline::PredictError>>;
}
