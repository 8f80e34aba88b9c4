//! Stop a running experiment (all its traffic back to the champion).

use crate::control::context::{CommandError, Context};
use crate::control::event::{ControlAction, ControlEvent, Record, Status};
use crate::control::state::{ControlState, stop};
use crate::experiment::ExperimentStatus;

#[derive(Debug, Clone)]
pub struct StopExperiment {
    pub id: String,
}

impl StopExperiment {
    pub fn apply(
        self,
        state: &mut ControlState,
        ctx: &Context<'_>,
    ) -> Result<Vec<ControlEvent>, CommandError> {
        let e = state.experiment_mut(&self.id)?;
        if !e.is_running() {
            return Err(CommandError::Conflict(format!(
                "experiment {} is stopped already",
                self.id
            )));
        }
        stop(e, ctx.why(), ctx.now);
        Ok(vec![Record::experiment(e).event(
            ControlAction::Stopped,
            Some(Status::Experiment(ExperimentStatus::Running)),
            ctx.actor,
            ctx.now,
        )])
    }
}
