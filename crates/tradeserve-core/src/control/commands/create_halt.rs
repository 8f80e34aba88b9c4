//! Create a trading halt: from now on, every order in its scope fails `kill_switch`. The
//! repeated-execution latch creates one too, unless its symbol is halted already.

use uuid::Uuid;

use crate::control::context::{CommandError, Context};
use crate::control::event::{Applied, ControlAction, Record};
use crate::control::state::ControlState;
use crate::halt::{Halt, HaltSpec, HaltStatus, Signed};

#[derive(Debug, Clone)]
pub struct CreateHalt {
    pub spec: HaltSpec,
    /// Refuse (409) when a halt of the same scope is already in force: a latch tripped on
    /// several replicas at once creates one halt.
    pub unless_in_force: bool,
}

impl CreateHalt {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let spec = self.spec;
        spec.validate()?;
        if self.unless_in_force
            && let Some(h) = state
                .halts
                .iter()
                .find(|h| h.is_active() && h.scope == spec.scope)
        {
            return Err(CommandError::Conflict(format!(
                "{} is in force on the same scope",
                h.halt_id
            )));
        }
        let halt = Halt {
            halt_id: format!("halt-{}", Uuid::now_v7()),
            scope: spec.scope,
            status: HaltStatus::Active,
            reason: spec.reason.clone(),
            created: Signed {
                by: ctx.who().to_owned(),
                at: ctx.now,
                reason: spec.reason,
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
