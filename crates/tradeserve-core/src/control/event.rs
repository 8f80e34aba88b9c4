//! The control event: one change of the control plane, for the audit trail on the events
//! topic (`schemas/control_event.schema.json`): what changed, from which status or stage to
//! which, who did it and why, and the record after the change.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::control::context::{Actor, CommandError};
use crate::control::state::KillRecord;
use crate::experiment::{Experiment, ExperimentStatus};
use crate::halt::{Halt, HaltStatus};
use crate::rollout::{GateReport, Rollout, Stage};

/// What applying a command gives: the events of the change, or why it was refused.
pub type Applied = Result<Vec<ControlEvent>, CommandError>;

/// Version of the control event's schema.
pub const CONTROL_SCHEMA_VERSION: u32 = 1;

/// What a control event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Experiment,
    Rollout,
    KillSwitch,
    Halt,
}

impl Subject {
    pub const ALL: [Subject; 4] = [
        Subject::Experiment,
        Subject::Rollout,
        Subject::KillSwitch,
        Subject::Halt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Experiment => "experiment",
            Subject::Rollout => "rollout",
            Subject::KillSwitch => "kill_switch",
            Subject::Halt => "halt",
        }
    }
}

/// What happened to the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    Created,
    Updated,
    Stopped,
    Promoted,
    /// Promoted past `full`: the candidate is the champion.
    Completed,
    Paused,
    RolledBack,
    /// The kill switch.
    Activated,
    /// A halt's release asked for by a first operator (two are needed).
    ReleaseRequested,
    /// A halt released.
    Released,
}

impl ControlAction {
    pub const ALL: [ControlAction; 10] = [
        ControlAction::Created,
        ControlAction::Updated,
        ControlAction::Stopped,
        ControlAction::Promoted,
        ControlAction::Completed,
        ControlAction::Paused,
        ControlAction::RolledBack,
        ControlAction::Activated,
        ControlAction::ReleaseRequested,
        ControlAction::Released,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Created => "created",
            ControlAction::Updated => "updated",
            ControlAction::Stopped => "stopped",
            ControlAction::Promoted => "promoted",
            ControlAction::Completed => "completed",
            ControlAction::Paused => "paused",
            ControlAction::RolledBack => "rolled_back",
            ControlAction::Activated => "activated",
            ControlAction::ReleaseRequested => "release_requested",
            ControlAction::Released => "released",
        }
    }
}

/// An experiment's status, a rollout's stage or a halt's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Status {
    Experiment(ExperimentStatus),
    Rollout(Stage),
    Halt(HaltStatus),
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Experiment(ExperimentStatus::Running) => "running",
            Status::Experiment(ExperimentStatus::Stopped) => "stopped",
            Status::Rollout(s) => s.as_str(),
            Status::Halt(h) => h.as_str(),
        }
    }
}

/// The record after the change, as the API returns it (`detail` of the event).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Experiment(Box<Experiment>),
    Rollout {
        #[serde(flatten)]
        rollout: Box<Rollout>,
        /// The gate report that made the change, when a gate made it.
        #[serde(skip_serializing_if = "Option::is_none")]
        gate: Option<Box<GateReport>>,
    },
    KillSwitch(KillRecord),
    Halt(Box<Halt>),
}

impl Record {
    pub fn halt(h: &Halt) -> Record {
        Record::Halt(Box::new(h.clone()))
    }

    pub fn experiment(e: &Experiment) -> Record {
        Record::Experiment(Box::new(e.clone()))
    }

    pub fn rollout(r: &Rollout) -> Record {
        Record::Rollout {
            rollout: Box::new(r.clone()),
            gate: None,
        }
    }

    pub fn subject(&self) -> Subject {
        match self {
            Record::Experiment(_) => Subject::Experiment,
            Record::Rollout { .. } => Subject::Rollout,
            Record::KillSwitch(_) => Subject::KillSwitch,
            Record::Halt(_) => Subject::Halt,
        }
    }

    /// The experiment or rollout id; `kill_switch` for the kill switch.
    pub fn id(&self) -> &str {
        match self {
            Record::Experiment(e) => &e.experiment_id,
            Record::Rollout { rollout, .. } => &rollout.rollout_id,
            Record::KillSwitch(_) => "kill_switch",
            Record::Halt(h) => &h.halt_id,
        }
    }

    /// The status or stage the record is in now.
    pub fn status(&self) -> Option<Status> {
        match self {
            Record::Experiment(e) => Some(Status::Experiment(e.status)),
            Record::Rollout { rollout, .. } => Some(Status::Rollout(rollout.stage)),
            Record::KillSwitch(_) => None,
            Record::Halt(h) => Some(Status::Halt(h.status)),
        }
    }

    /// The event of a change to this record: `action` by `by`, from `from` to where the
    /// record is now.
    pub fn event(
        self,
        action: ControlAction,
        from: Option<Status>,
        by: &Actor,
        at: OffsetDateTime,
    ) -> ControlEvent {
        ControlEvent {
            schema_version: CONTROL_SCHEMA_VERSION,
            event_type: "control_change",
            event_id: Uuid::now_v7(),
            timestamp: at,
            subject: self.subject(),
            subject_id: self.id().to_owned(),
            action,
            from,
            to: self.status(),
            actor: by.who.clone(),
            reason: by.reason.clone(),
            detail: self,
        }
    }
}

/// One change of the control plane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlEvent {
    pub schema_version: u32,
    /// Always `control_change`.
    pub event_type: &'static str,
    pub event_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub subject: Subject,
    /// Experiment, rollout or halt id (`kill_switch` for the kill switch).
    pub subject_id: String,
    pub action: ControlAction,
    /// Status or stage before and after.
    pub from: Option<Status>,
    pub to: Option<Status>,
    pub actor: String,
    pub reason: String,
    /// The record after the change.
    pub detail: Record,
}

impl ControlEvent {
    /// The rollout a `completed` event finished, with the candidate that is now champion.
    pub fn completed_rollout(&self) -> Option<&Rollout> {
        match (&self.action, &self.detail) {
            (ControlAction::Completed, Record::Rollout { rollout, .. }) => Some(rollout),
            _ => None,
        }
    }
}
