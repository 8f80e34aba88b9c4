//! Roll a rollout back: all traffic to the champion at once.

use crate::control::context::Context;
use crate::control::event::{Applied, ControlAction, Record, Status};
use crate::control::state::ControlState;

#[derive(Debug, Clone)]
pub struct RollBack {
    pub id: String,
}

impl RollBack {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let r = state.rollout_mut(&self.id)?;
        let from = Some(Status::Rollout(r.stage));
        r.roll_back(ctx.who(), ctx.why(), ctx.now)?;
        Ok(vec![Record::rollout(r).event(
            ControlAction::RolledBack,
            from,
            ctx.actor,
            ctx.now,
        )])
    }
}
