//! Every error of the domain and its ports, in one place: why features, a model, the risk
//! ledger or an event sink failed, and why a request got no decision. The server maps
//! [`PredictError`] to HTTP statuses in one table.

use std::time::Duration;

use crate::request::RequestError;
use crate::types::Role;

/// Why features could not be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),
    /// No features at that `timestamp` (before the retained history, or outside the replay).
    #[error("{0}")]
    NoData(String),
    /// The live symbol has fewer bars than the longest feature window.
    #[error("{symbol} is warming up: {bars} of the {needed} bars the longest feature window needs")]
    WarmingUp {
        symbol: String,
        bars: usize,
        needed: usize,
    },
    #[error("feature source unavailable: {0}")]
    Unavailable(String),
    /// The symbol's newest bar is older than the configured maximum: no decision on it.
    #[error("features of {symbol} are stale: the newest bar ended {age:?} ago (max {max:?})")]
    Stale {
        symbol: String,
        age: std::time::Duration,
        max: std::time::Duration,
    },
}

/// Why a model call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("model input has width {got}, expected {expected}")]
    InputWidth { expected: usize, got: usize },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("model output is not a probability vector: {0:?}")]
    BadOutput(Vec<f32>),
    /// A remote backend did not answer: refused, failed, or answered nonsense (HTTP 503).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A remote backend was still working when the request's deadline came (HTTP 504).
    #[error("backend still working at the request deadline")]
    Deadline,
}

/// Why the risk ledger could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RiskError {
    #[error("risk ledger unavailable: {0}")]
    Unavailable(String),
}

/// Why the control store could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("control store unavailable: {0}")]
    Unavailable(String),
    #[error("control store holds an unreadable state: {0}")]
    Corrupt(String),
}

/// Why the fleet's shared measurements or awaiting outcomes could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FleetError {
    #[error("fleet store unavailable: {0}")]
    Unavailable(String),
    #[error("fleet store holds an unreadable entry: {0}")]
    Corrupt(String),
}

/// A setting outside what it may be: one sentence naming the key (`section.key`), the value
/// and the rule, e.g. "risk.max_position_shares must be at least 1". Every configuration
/// section's `validate` answers with it; the server's configuration wraps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

impl From<String> for InvalidSetting {
    fn from(why: String) -> InvalidSetting {
        InvalidSetting(why)
    }
}

impl From<&str> for InvalidSetting {
    fn from(why: &str) -> InvalidSetting {
        InvalidSetting(why.to_owned())
    }
}

/// Why a component (a risk ledger, an event sink) cannot do its work now: a sentence for
/// readiness and `/api/v1/stats`, e.g. "disk full: No space left on device".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(transparent)]
#[error("{0}")]
pub struct Unhealthy(pub String);

/// Why an event could not be accepted for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("event queue is full")]
    QueueFull,
    #[error("event sink is shut down")]
    Closed,
    /// The event could not be written where it must be before the decision is answered
    /// (audit log or spool): disk full, permissions, I/O error.
    #[error("cannot record the event: {0}")]
    Write(std::io::ErrorKind),
}

/// Why no decision was returned.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Features(#[from] FeatureError),
    #[error("model {role} failed: {cause}")]
    Model { role: Role, cause: ModelError },
    #[error(transparent)]
    Risk(#[from] RiskError),
    #[error("too many explanations in progress; retry, or ask without explain")]
    ExplainOverloaded,
    #[error("explanation failed: {0}")]
    Explain(String),
    #[error("the decision could not be recorded, so it is not answered: {0}")]
    Unrecorded(EmitError),
    #[error("deadline of {deadline:?} exceeded after {elapsed:?}")]
    DeadlineExceeded {
        deadline: Duration,
        elapsed: Duration,
    },
    #[error("this idempotency key was used for a different request")]
    IdempotencyConflict,
    #[error("the first request with this idempotency key is still being decided; retry")]
    IdempotencyInFlight,
    #[error("{0}; a request with an idempotency key is not decided without it")]
    IdempotencyUnavailable(String),
}
