//! What goes on the events topic: decision events (DESIGN.md §8), shadow results (what a
//! rollout's candidate decided for a decision, after the response), and control events, the
//! audit trail of every experiment and rollout change (who, when, why). All are JSON objects
//! told apart by `event_type`; `schemas/` describes each.

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decision::{DecisionEvent, ShadowEvent};

/// Version of the control event's schema (`schemas/control_event.schema.json`).
pub const CONTROL_SCHEMA_VERSION: u32 = 1;

/// What a control event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Experiment,
    Rollout,
    KillSwitch,
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
    /// Experiment or rollout id (`kill_switch` for the kill switch).
    pub subject_id: String,
    /// `created`, `updated`, `stopped`, `promoted`, `paused`, `rolled_back`, `completed`.
    pub action: String,
    /// Status or stage before and after.
    pub from: Option<String>,
    pub to: Option<String>,
    pub actor: String,
    pub reason: String,
    /// The record after the change (the experiment or rollout as the API returns it).
    pub detail: serde_json::Value,
}

impl ControlEvent {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        subject: Subject,
        subject_id: &str,
        action: &str,
        from: Option<String>,
        to: Option<String>,
        actor: &str,
        reason: &str,
        detail: serde_json::Value,
    ) -> ControlEvent {
        ControlEvent {
            schema_version: CONTROL_SCHEMA_VERSION,
            event_type: "control_change",
            event_id: Uuid::now_v7(),
            timestamp: OffsetDateTime::now_utc(),
            subject,
            subject_id: subject_id.to_owned(),
            action: action.to_owned(),
            from,
            to,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            detail,
        }
    }
}

/// Anything an event sink carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Decision(Box<DecisionEvent>),
    Control(Box<ControlEvent>),
    Shadow(Box<ShadowEvent>),
}

impl Event {
    /// The record key: the symbol (per-symbol order) or the experiment/rollout id.
    pub fn key(&self) -> &str {
        match self {
            Event::Decision(d) => d.symbol.as_str(),
            Event::Control(c) => &c.subject_id,
            Event::Shadow(s) => s.symbol.as_str(),
        }
    }

    /// `decision_id` (of a decision or of the decision a shadow result annotates) or
    /// `event_id`.
    pub fn id(&self) -> Uuid {
        match self {
            Event::Decision(d) => d.decision_id,
            Event::Control(c) => c.event_id,
            Event::Shadow(s) => s.decision_id,
        }
    }
}

impl From<DecisionEvent> for Event {
    fn from(e: DecisionEvent) -> Event {
        Event::Decision(Box::new(e))
    }
}

impl From<ShadowEvent> for Event {
    fn from(e: ShadowEvent) -> Event {
        Event::Shadow(Box::new(e))
    }
}

impl From<ControlEvent> for Event {
    fn from(e: ControlEvent) -> Event {
        Event::Control(Box::new(e))
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Decision(d) => d.serialize(s),
            Event::Control(c) => c.serialize(s),
            Event::Shadow(e) => e.serialize(s),
        }
    }
}
