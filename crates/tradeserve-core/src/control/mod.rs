//! The control domain: the stored state of experiments, rollouts, the
//! champion override and the kill switch, the commands that change it, the audit events a
//! change produces, and the port decisions and outcomes are credited to arms through. Pure:
//! storing, model loading and publishing are the server's control plane.
//!
//! - [`state`]: [`ControlState`] and the kill switch's [`KillRecord`].
//! - [`context`]: who asks ([`Actor`]), what a command sees ([`Context`]), why it is refused.
//! - [`commands`]: one module per command, each with its own `apply`; [`Command`] names them.
//! - [`event`]: the typed control event a change produces.
//! - [`recorder`]: the [`ArmRecorder`] port (arm measurements and outcomes).

pub mod commands;
pub mod context;
pub mod event;
pub mod recorder;
pub mod state;

pub use commands::Command;
pub use context::{Actor, CommandError, Context};
pub use event::{ControlAction, ControlEvent, Record, Status, Subject};
pub use recorder::{ArmRecorder, Credit, OutcomeError, ShadowRun};
pub use state::{ControlState, KillRecord};

#[cfg(test)]
mod tests;
