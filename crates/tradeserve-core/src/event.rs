//! What goes on the events topic: decision events, shadow results (what a
//! rollout's candidate decided for a decision, after the response), and control events, the
//! audit trail of every experiment and rollout change (who, when, why;
//! [`crate::control::event`]). All are JSON objects told apart by `event_type`; `schemas/`
//! describes each.

use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::control::event::ControlEvent;
use crate::decision::{DecisionEvent, ShadowEvent};

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
