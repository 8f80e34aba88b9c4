//! Pause a rollout at its stage: no automatic promotion (failing gates still roll back).

use crate::control::context::Context;
use crate::control::event::{Applied, ControlAction, Record, Status};
use crate::control::state::ControlState;

#[derive(Debug, Clone)]
pub struct Pause {
    pub id: String,
}

impl Pause {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let r = state.rollout_mut(&self.id)?;
        r.pause(ctx.who(), ctx.why(), ctx.now)?;
        let from = Some(Status::Rollout(r.stage));
        Ok(vec![Record::rollout(r).event(
            ControlAction::Paused,
            from,
            ctx.actor,
            ctx.now,
        )])
    }
}
