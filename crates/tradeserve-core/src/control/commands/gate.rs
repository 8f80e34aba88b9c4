//! Apply a gate verdict: a failing gate rolls the rollout back, a passing one promotes it when
//! auto-promotion is on and it is not paused. Only while the rollout is still in the stage the
//! report judged; the event carries the report (a backtest stage's also stays on the rollout).

use crate::control::commands::promote::Promote;
use crate::control::commands::roll_back::RollBack;
use crate::control::context::{CommandError, Context};
use crate::control::event::{Applied, ControlEvent, Record};
use crate::control::state::ControlState;
use crate::rollout::{GateReport, Stage, Verdict};

#[derive(Debug, Clone)]
pub struct Gate {
    pub id: String,
    pub report: GateReport,
}

impl Gate {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let Gate { id, report } = self;
        let r = state.rollout_mut(&id)?;
        if r.stage != report.stage {
            return Err(CommandError::Conflict(format!(
                "rollout {id} left stage {} before its gate applied",
                report.stage.as_str()
            )));
        }
        // The backtest's report stays with the rollout for its life, whatever comes next.
        if report.stage == Stage::Backtest && report.verdict != Verdict::Wait {
            r.backtest_report = Some(Box::new(report.clone()));
        }
        let waiting_for_manual = r.paused || !r.auto_promote;
        let (reason, promote) = match report.verdict {
            Verdict::Fail => (format!("gate failed: {}", report.failures()), false),
            Verdict::Pass if waiting_for_manual => {
                return Err(CommandError::Conflict(
                    "gate passed; waiting for a manual promote".into(),
                ));
            }
            Verdict::Pass => ("gate passed".to_owned(), true),
            Verdict::Wait => {
                return Err(CommandError::Conflict("gate is still waiting".into()));
            }
        };
        let gate = ctx.actor.because(reason);
        let ctx = Context {
            actor: &gate,
            ..*ctx
        };
        let mut events = if promote {
            Promote { id }.apply(state, &ctx)?
        } else {
            RollBack { id }.apply(state, &ctx)?
        };
        if let Some(ControlEvent {
            detail: Record::Rollout { gate, .. },
            ..
        }) = events.first_mut()
        {
            *gate = Some(Box::new(report));
        }
        Ok(events)
    }
}
