//! Create a trading halt: from now on, every order in its scope fails `kill_switch`.

use uuid::Uuid;

use crate::control::context::Context;
use crate::control::event::{Applied, ControlAction, Record};
use crate::control::state::ControlState;
use crate::halt::{Halt, HaltSpec, HaltStatus, Signed};

#[derive(Debug, Clone)]
pub struct CreateHalt(pub HaltSpec);

impl CreateHalt {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        self.0.validate()?;
        let halt = Halt {
            halt_id: format!("halt-{}", Uuid::now_v7()),
            scope: self.0.scope,
            status: HaltStatus::Active,
            reason: self.0.reason.clone(),
            created: Signed {
                by: ctx.who().to_owned(),
                at: ctx.now,
                reason: self.0.reason,
            },
            release_requested: None,
            released: None,
        };
        state.halts.push(halt.clone());
        let by = ctx.actor.because(halt.reason.clone());
        Ok(vec![Record::halt(&halt).event(
            ControlAction::Created,
            None,
            &by,
            ctx.now,
        )])
    }
}
