//! The control plane of experiments, rollouts and the kill switch (DESIGN.md §6–7).
//!
//! - [`state`]: the stored state and the commands that change it (pure).
//! - [`store`]: where it lives (a file; [`redis_store`] for many replicas).
//! - [`catalog`]: the model versions it may route to, loaded before a change is stored.
//! - [`plane`]: the writer, the routing snapshot, and the gates.
//! - [`tasks`]: the background poller (other replicas' changes) and gate evaluator.

pub mod catalog;
pub mod plane;
pub mod redis_store;
pub mod state;
pub mod store;
pub mod tasks;

pub use plane::{ControlPlane, PlaneError};
pub use state::{Actor, Command, CommandError, ControlState};
