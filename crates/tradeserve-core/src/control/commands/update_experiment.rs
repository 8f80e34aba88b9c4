//! Update a running experiment's split or description.

use crate::control::context::Context;
use crate::control::event::{Applied, ControlAction, Record, Status};
use crate::control::state::ControlState;
use crate::experiment::ExperimentUpdate;

#[derive(Debug, Clone)]
pub struct UpdateExperiment {
    pub id: String,
    pub update: ExperimentUpdate,
}

impl UpdateExperiment {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let e = state.running_experiment_mut(&self.id)?;
        e.update(self.update, ctx.now)?;
        let from = Some(Status::Experiment(e.status));
        Ok(vec![Record::experiment(e).event(
            ControlAction::Updated,
            from,
            ctx.actor,
            ctx.now,
        )])
    }
}
