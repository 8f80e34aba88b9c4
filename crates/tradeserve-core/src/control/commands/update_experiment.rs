//! Update a running experiment's split or description.

use crate::control::context::{CommandError, Context};
use crate::control::event::{ControlAction, ControlEvent, Record, Status};
use crate::control::state::ControlState;
use crate::experiment::ExperimentUpdate;

#[derive(Debug, Clone)]
pub struct UpdateExperiment {
    pub id: String,
    pub update: ExperimentUpdate,
}

impl UpdateExperiment {
    pub fn apply(
        self,
        state: &mut ControlState,
        ctx: &Context<'_>,
    ) -> Result<Vec<ControlEvent>, CommandError> {
        let e = state.experiment_mut(&self.id)?;
        if !e.is_running() {
            return Err(CommandError::Conflict(format!(
                "experiment {} is stopped",
                self.id
            )));
        }
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
