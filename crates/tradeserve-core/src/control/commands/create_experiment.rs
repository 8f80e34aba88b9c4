//! Create an experiment: one running at a time, ids unique.

use crate::control::context::{CommandError, Context};
use crate::control::event::{Applied, ControlAction, Record};
use crate::control::state::ControlState;
use crate::experiment::ExperimentSpec;

#[derive(Debug, Clone)]
pub struct CreateExperiment(pub ExperimentSpec);

impl CreateExperiment {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let e = self.0.into_experiment(ctx.now)?;
        if state.experiment(&e.experiment_id).is_some() {
            return Err(CommandError::Conflict(format!(
                "experiment {} exists already",
                e.experiment_id
            )));
        }
        if let Some(running) = state.running_experiment() {
            return Err(CommandError::Conflict(format!(
                "experiment {} is running: one experiment at a time (stop it first)",
                running.experiment_id
            )));
        }
        let event = Record::experiment(&e).event(ControlAction::Created, None, ctx.actor, ctx.now);
        state.experiments.push(e);
        Ok(vec![event])
    }
}
