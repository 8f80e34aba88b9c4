//! Create a rollout: its candidate frozen against the serving champion, one active at a time.

use crate::control::context::{CommandError, Context};
use crate::control::event::{Applied, ControlAction, Record};
use crate::control::state::ControlState;
use crate::rollout::RolloutSpec;

#[derive(Debug, Clone)]
pub struct CreateRollout(pub RolloutSpec);

impl CreateRollout {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let r = self.0.into_rollout(ctx.champion, ctx.who(), ctx.now)?;
        if state.rollout(&r.rollout_id).is_some() {
            return Err(CommandError::Conflict(format!(
                "rollout {} exists already",
                r.rollout_id
            )));
        }
        if let Some(active) = state.active_rollout() {
            return Err(CommandError::Conflict(format!(
                "rollout {} is active: one rollout at a time",
                active.rollout_id
            )));
        }
        let event = Record::rollout(&r).event(ControlAction::Created, None, ctx.actor, ctx.now);
        state.rollouts.push(r);
        Ok(vec![event])
    }
}
