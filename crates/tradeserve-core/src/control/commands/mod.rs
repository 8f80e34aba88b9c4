//! The commands that change the control state, one module per command, each with its own
//! `apply` (validate against the state, change it, return the control events). [`Command`]
//! names them for the control plane, which stores the result; [`ControlState::apply`] runs
//! one and bumps the revision.

mod create_experiment;
mod create_halt;
mod create_rollout;
mod gate;
mod kill_switch;
mod pause;
mod promote;
mod release_halt;
mod roll_back;
mod stop_experiment;
mod update_experiment;

pub use create_experiment::CreateExperiment;
pub use create_halt::CreateHalt;
pub use create_rollout::CreateRollout;
pub use gate::Gate;
pub use kill_switch::KillSwitch;
pub use pause::Pause;
pub use promote::Promote;
pub use release_halt::ReleaseHalt;
pub use roll_back::RollBack;
pub use stop_experiment::StopExperiment;
pub use update_experiment::UpdateExperiment;

use crate::control::context::{CommandError, Context};
use crate::control::event::{Applied, ControlEvent};
use crate::control::state::ControlState;

/// A change to the control state.
#[derive(Debug, Clone)]
pub enum Command {
    CreateExperiment(CreateExperiment),
    UpdateExperiment(UpdateExperiment),
    StopExperiment(StopExperiment),
    CreateRollout(CreateRollout),
    Promote(Promote),
    Pause(Pause),
    RollBack(RollBack),
    /// Apply a gate verdict, if the rollout is still in the stage it judged.
    Gate(Gate),
    KillSwitch(KillSwitch),
    CreateHalt(CreateHalt),
    ReleaseHalt(ReleaseHalt),
}

impl Command {
    /// Apply to `state` without bumping its revision (see [`ControlState::apply`]).
    fn apply_to(self, state: &mut ControlState, ctx: &Context<'_>) -> Applied {
        match self {
            Command::CreateExperiment(c) => c.apply(state, ctx),
            Command::UpdateExperiment(c) => c.apply(state, ctx),
            Command::StopExperiment(c) => c.apply(state, ctx),
            Command::CreateRollout(c) => c.apply(state, ctx),
            Command::Promote(c) => c.apply(state, ctx),
            Command::Pause(c) => c.apply(state, ctx),
            Command::RollBack(c) => c.apply(state, ctx),
            Command::Gate(c) => c.apply(state, ctx),
            Command::KillSwitch(c) => c.apply(state, ctx),
            Command::CreateHalt(c) => c.apply(state, ctx),
            Command::ReleaseHalt(c) => c.apply(state, ctx),
        }
    }

    pub fn is_kill_switch(&self) -> bool {
        matches!(self, Command::KillSwitch(_))
    }
}

impl ControlState {
    /// Apply one command; on success the revision is bumped and the control events returned.
    /// A refused command leaves the state as it was.
    pub fn apply(
        &mut self,
        command: Command,
        ctx: &Context<'_>,
    ) -> Result<Vec<ControlEvent>, CommandError> {
        let mut next = self.clone();
        let events = command.apply_to(&mut next, ctx)?;
        next.prune();
        next.revision += 1;
        *self = next;
        Ok(events)
    }
}

macro_rules! into_command {
    ($($t:ident),*) => {
        $(impl From<$t> for Command {
            fn from(c: $t) -> Command {
                Command::$t(c)
            }
        })*
    };
}

into_command!(
    CreateExperiment,
    UpdateExperiment,
    StopExperiment,
    CreateRollout,
    Promote,
    Pause,
    RollBack,
    Gate,
    KillSwitch,
    CreateHalt,
    ReleaseHalt
);
