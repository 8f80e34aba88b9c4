//! Release a trading halt. With `approvals = 2` the first operator's release is recorded as
//! requested (the halt stays active) and a second, different operator releases it; the same
//! operator twice is refused.

use crate::control::context::{CommandError, Context};
use crate::control::event::{Applied, ControlAction, Record, Status};
use crate::control::state::ControlState;
use crate::halt::{HaltStatus, Signed, validate_reason};

#[derive(Debug, Clone)]
pub struct ReleaseHalt {
    pub id: String,
    /// Operators needed: 1 or 2.
    pub approvals: u8,
}

impl ReleaseHalt {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        validate_reason(ctx.why())?;
        let halt = state.halt_mut(&self.id)?;
        let from = halt.status;
        let signed = Signed {
            by: ctx.who().to_owned(),
            at: ctx.now,
            reason: ctx.why().to_owned(),
        };
        let action = match (halt.status, &halt.release_requested) {
            (HaltStatus::Released, _) => {
                return Err(CommandError::Conflict(format!(
                    "halt {} is released already",
                    self.id
                )));
            }
            (_, Some(first)) if first.by == signed.by => {
                return Err(CommandError::Conflict(format!(
                    "halt {}: {} asked for its release already; a second, different operator must release it",
                    self.id, signed.by
                )));
            }
            (HaltStatus::Active, _) if self.approvals >= 2 => {
                halt.status = HaltStatus::ReleaseRequested;
                halt.release_requested = Some(signed);
                ControlAction::ReleaseRequested
            }
            _ => {
                halt.status = HaltStatus::Released;
                halt.released = Some(signed);
                ControlAction::Released
            }
        };
        let record = Record::halt(halt);
        Ok(vec![record.event(
            action,
            Some(Status::Halt(from)),
            ctx.actor,
            ctx.now,
        )])
    }
}
