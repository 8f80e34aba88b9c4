//! The control plane of experiments, rollouts and the kill switch.
//!
//! The state, its commands and their events are the domain's
//! ([`tradeserve_core::control`]); this module keeps the orchestration:
//!
//! - [`store`]: where it lives (a file; `tradeserve_redis::control_store` for many replicas).
//! - [`catalog`]: the model versions it may route to, loaded before a change is stored.
//! - [`plane`]: the writer, the routing snapshot, the measurements and the gates.
//! - [`units`]: this replica's measurements of each experiment and rollout stage.
//! - [`tasks`]: the background poller (other replicas' changes) and gate evaluator.
//! - [`backtest`]: the backtest a rollout's `backtest` stage is judged on.

pub mod backtest;
pub mod catalog;
pub mod plane;
pub mod store;
pub mod tasks;
pub mod units;

pub use plane::{ControlPlane, PlaneError};
pub use tradeserve_core::control::{Actor, Command, CommandError, ControlState};
