//! TradeServe's domain: what a decision is and how it is made, with no I/O.
//!
//! Layout:
//! - [`types`]: closed sets (actions, roles, specialists) and the validated symbol.
//! - [`schema`]: the feature schema every model input is checked against.
//! - [`request`]: parsing and validating `POST /api/v1/predict` bodies.
//! - [`blend`]: entropy, blending specialists by weight, picking the action.
//! - [`sizing`]: the quantity policy.
//! - [`snapshot`]: the features a decision is made on.
//! - [`error`]: every error of the domain and its ports; [`log_every`]: a per-request log
//!   line written at most once per period.
//! - [`risk`]: risk limits and the named checks (rules only); [`ledger`]: the in-process
//!   risk ledger (the embedded adapter).
//! - [`ports`]: traits for the feature source, risk ledger, event sink, shadow runner,
//!   explainer, control store and the fleet's shared measurements and outcomes (the inference
//!   model's trait is in [`model_set`]).
//! - [`model_set`]: the immutable set of five loaded models a request reads once.
//! - [`decision`]: the response decision and the audit event.
//! - [`event`]: everything on the events topic: decision, shadow and control events.
//! - [`explain`]: Shapley-value explanations of a decision through the whole ensemble.
//! - [`experiment`]: A/B experiments and the stable (MurmurHash3) arm assignment.
//! - [`rollout`]: progressive rollout stages, their state machine and gates.
//! - [`control`]: the control state, one module per command that changes it, the typed
//!   control event, and the [`control::ArmRecorder`] port arms and outcomes are credited
//!   through.
//! - [`arm_stats`]: per-arm measurement, mergeable across replicas; [`fleet`]: each
//!   replica's share of it and their merge, and the decisions awaiting an outcome; [`stats`]:
//!   the significance tests and views of reports.
//! - [`routing`]: the snapshot of champion, experiment and rollout a request routes by.
//! - [`pipeline`]: the hot path that ties them together, and the decision [`pipeline::kernel`]
//!   it shares with the shadow runner and replay; [`prediction`]: what a request comes to.
//!
//! Dependencies between modules point one way: leaf types (`types`, `schema`, `snapshot`,
//! `error`) ← the rules and records ← `ports` ← the adapters (`ledger`) and `pipeline`.
//!
//! Adapters (ONNX engines, market replay, audit log, HTTP) live in other crates and depend on
//! this one, never the reverse.

pub mod arm_stats;
pub mod backtest_criteria;
pub mod backtest_gate;
pub mod blend;
pub mod bounded;
pub mod control;
pub mod decision;
pub mod drift;
pub mod error;
pub mod event;
pub mod experiment;
pub mod explain;
pub mod fleet;
pub mod halt;
pub mod idempotency;
pub mod kernel;
pub mod ledger;
pub mod log_every;
pub mod model_set;
#[cfg(feature = "openapi")]
mod openapi;
pub mod pipeline;
pub mod ports;
pub mod prediction;
pub mod remote;
pub mod request;
pub mod risk;
pub mod rollout;
pub mod routing;
pub mod schema;
pub mod sizing;
pub mod snapshot;
pub mod stats;
pub mod types;

pub use decision::{Decision, DecisionEvent};
pub use model_set::{LoadedModel, ModelInfo, ModelSet};
pub use pipeline::{Failed, Outcome, Pipeline, PipelineConfig, PredictError, StageTimings};
pub use request::{PredictRequest, RequestError};
pub use routing::Routing;
pub use types::{Action, Role, Specialist, Symbol};
