//! Promote a rollout to its next stage; past `full` it completes and its candidate becomes
//! the champion.

use crate::control::context::Context;
use crate::control::event::{Applied, ControlAction, Record, Status};
use crate::control::state::ControlState;
use crate::rollout::Stage;

#[derive(Debug, Clone)]
pub struct Promote {
    pub id: String,
}

impl Promote {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let r = state.rollout_mut(&self.id)?;
        let from = Some(Status::Rollout(r.stage));
        let to = r.promote(ctx.who(), ctx.why(), ctx.now)?;
        let completed = (to == Stage::Completed).then(|| r.candidate.clone());
        let action = match completed {
            Some(_) => ControlAction::Completed,
            None => ControlAction::Promoted,
        };
        let event = Record::rollout(r).event(action, from, ctx.actor, ctx.now);
        if completed.is_some() {
            state.champion = completed;
        }
        Ok(vec![event])
    }
}
