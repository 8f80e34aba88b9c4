//! The kill switch: stop every running experiment and roll back every active rollout at
//! once, with one event per record changed and one for the switch.

use crate::control::context::Context;
use crate::control::event::{Applied, ControlAction, Record, Status};
use crate::control::state::{ControlState, KillRecord, stop};
use crate::experiment::ExperimentStatus;

#[derive(Debug, Clone, Default)]
pub struct KillSwitch;

impl KillSwitch {
    pub fn apply(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        let killer = ctx.actor.because(format!("kill switch: {}", ctx.why()));
        let mut events = Vec::new();
        for e in state.experiments.iter_mut().filter(|e| e.is_running()) {
            stop(e, ctx.why(), ctx.now);
            let from = Some(Status::Experiment(ExperimentStatus::Running));
            events.push(Record::experiment(e).event(
                ControlAction::Stopped,
                from,
                &killer,
                ctx.now,
            ));
        }
        let stopped = events.len();
        for r in state.rollouts.iter_mut().filter(|r| r.stage.is_active()) {
            let from = Some(Status::Rollout(r.stage));
            r.roll_back(&killer.who, &killer.reason, ctx.now)?;
            events.push(Record::rollout(r).event(
                ControlAction::RolledBack,
                from,
                &killer,
                ctx.now,
            ));
        }
        let record = KillRecord {
            at: ctx.now,
            actor: ctx.who().to_owned(),
            reason: ctx.why().to_owned(),
            experiments_stopped: stopped,
            rollouts_rolled_back: events.len() - stopped,
        };
        state.kill_switch = Some(record.clone());
        events.push(Record::KillSwitch(record).event(
            ControlAction::Activated,
            None,
            ctx.actor,
            ctx.now,
        ));
        Ok(events)
    }
}
