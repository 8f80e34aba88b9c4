//! Stop a running experiment (all its traffic back to the champion).

use crate::control::context::Context;
use crate::control::event::{Applied, ControlAction, Record, Status};
use crate::control::state::{ControlState, stop};
use crate::experiment::ExperimentStatus;

#[derive(Debug, Clone)]
pub struct StopExperiment {
    pub id: String,
}

impl StopExperiment {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let e = state.running_experiment_mut(&self.id)?;
        stop(e, ctx.why(), ctx.now);
        Ok(vec![Record::experiment(e).event(
            ControlAction::Stopped,
            Some(Status::Experiment(ExperimentStatus::Running)),
            ctx.actor,
            ctx.now,
        )])
    }
}
