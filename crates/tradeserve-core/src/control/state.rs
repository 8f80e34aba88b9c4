//! The control state: every experiment and rollout, the champion override, the last kill
//! switch and the trading halts, as one serializable value with a revision (writes are compare-and-swap on it).
//! Commands ([`crate::control::commands`]) change it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::control::context::CommandError;
use crate::experiment::{Experiment, ExperimentStatus};
use crate::halt::Halt;
use crate::rollout::Rollout;
use crate::types::Role;

/// Finished experiments and rollouts kept for their reports.
const KEEP_FINISHED: usize = 50;

/// The last use of the kill switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KillRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub reason: String,
    pub experiments_stopped: usize,
    pub rollouts_rolled_back: usize,
}

/// Everything the control plane stores, shared by every replica.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ControlState {
    /// Incremented by every write; writes are compare-and-swap on it.
    pub revision: u64,
    pub experiments: Vec<Experiment>,
    pub rollouts: Vec<Rollout>,
    /// Champion versions set by a completed rollout (bundled models; with MLflow the alias
    /// moves instead and this stays `None`).
    #[serde(default)]
    pub champion: Option<BTreeMap<Role, String>>,
    #[serde(default)]
    pub kill_switch: Option<KillRecord>,
    /// Trading halts: every active one, and the last released ones.
    #[serde(default)]
    pub halts: Vec<Halt>,
}

impl ControlState {
    pub fn running_experiment(&self) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.is_running())
    }

    pub fn active_rollout(&self) -> Option<&Rollout> {
        self.rollouts.iter().find(|r| r.stage.is_active())
    }

    pub fn experiment(&self, id: &str) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.experiment_id == id)
    }

    pub fn rollout(&self, id: &str) -> Option<&Rollout> {
        self.rollouts.iter().find(|r| r.rollout_id == id)
    }

    /// The experiment `id`, or 404.
    pub fn experiment_mut(&mut self, id: &str) -> Result<&mut Experiment, CommandError> {
        self.experiments
            .iter_mut()
            .find(|e| e.experiment_id == id)
            .ok_or_else(|| CommandError::NotFound {
                kind: "experiment",
                id: id.to_owned(),
            })
    }

    /// The experiment `id` while it runs: 404 when there is none, 409 when it has stopped.
    pub fn running_experiment_mut(&mut self, id: &str) -> Result<&mut Experiment, CommandError> {
        let e = self.experiment_mut(id)?;
        if !e.is_running() {
            return Err(CommandError::Conflict(format!(
                "experiment {id} is stopped already"
            )));
        }
        Ok(e)
    }

    /// The rollout `id`, or 404.
    pub fn rollout_mut(&mut self, id: &str) -> Result<&mut Rollout, CommandError> {
        self.rollouts
            .iter_mut()
            .find(|r| r.rollout_id == id)
            .ok_or_else(|| CommandError::NotFound {
                kind: "rollout",
                id: id.to_owned(),
            })
    }

    /// The halt `id`, or 404.
    pub fn halt_mut(&mut self, id: &str) -> Result<&mut Halt, CommandError> {
        self.halts
            .iter_mut()
            .find(|h| h.halt_id == id)
            .ok_or_else(|| CommandError::NotFound {
                kind: "halt",
                id: id.to_owned(),
            })
    }

    pub fn halt(&self, id: &str) -> Option<&Halt> {
        self.halts.iter().find(|h| h.halt_id == id)
    }

    /// Drop the oldest finished records beyond [`KEEP_FINISHED`].
    pub(crate) fn prune(&mut self) {
        let finished = self.experiments.iter().filter(|e| !e.is_running()).count();
        let mut drop = finished.saturating_sub(KEEP_FINISHED);
        self.experiments.retain(|e| {
            let gone = drop > 0 && !e.is_running();
            drop -= usize::from(gone);
            !gone
        });
        let finished = self
            .rollouts
            .iter()
            .filter(|r| !r.stage.is_active())
            .count();
        let mut drop = finished.saturating_sub(KEEP_FINISHED);
        self.rollouts.retain(|r| {
            let gone = drop > 0 && !r.stage.is_active();
            drop -= usize::from(gone);
            !gone
        });
        let released = self.halts.iter().filter(|h| !h.is_active()).count();
        let mut drop = released.saturating_sub(KEEP_FINISHED);
        self.halts.retain(|h| {
            let gone = drop > 0 && !h.is_active();
            drop -= usize::from(gone);
            !gone
        });
    }
}

/// Mark a running experiment stopped.
pub(crate) fn stop(e: &mut Experiment, why: &str, now: OffsetDateTime) {
    e.status = ExperimentStatus::Stopped;
    e.stopped_at = Some(now);
    e.stop_reason = Some(why.to_owned());
    e.updated_at = now;
}
