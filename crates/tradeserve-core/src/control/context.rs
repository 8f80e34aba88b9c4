//! What a control command is given and how it can be refused: the [`Actor`] that asked, the
//! [`Context`] it applies in (the champion now serving, the time), and [`CommandError`].

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::experiment::InvalidField;
use crate::rollout::Conflict;
use crate::types::Role;

/// Who asked and why (recorded on every change).
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub who: String,
    pub reason: String,
}

impl Actor {
    /// The same actor with another reason (a gate verdict, the kill switch).
    pub fn because(&self, reason: String) -> Actor {
        Actor {
            who: self.who.clone(),
            reason,
        }
    }
}

/// What a command applies with.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub actor: &'a Actor,
    /// What serves now: the base of a new rollout's candidate.
    pub champion: &'a BTreeMap<Role, String>,
    pub now: OffsetDateTime,
}

impl Context<'_> {
    pub fn who(&self) -> &str {
        &self.actor.who
    }

    pub fn why(&self) -> &str {
        &self.actor.reason
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// A field of the request is invalid (HTTP 422).
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// No such experiment or rollout (HTTP 404).
    #[error("no {kind} {id}")]
    NotFound { kind: &'static str, id: String },
    /// The command does not apply in the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
}

impl From<Conflict> for CommandError {
    fn from(c: Conflict) -> CommandError {
        CommandError::Conflict(c.to_string())
    }
}
