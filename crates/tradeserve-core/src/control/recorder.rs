//! The port decisions, failures, shadow runs and outcomes are credited to the arms of the
//! running experiment and the active rollout through. The server's adapter keeps the arms'
//! measurements, exports their counters and remembers which decisions await an outcome; the
//! request path calls it once per answer, with no await. Only a posted outcome may await (with
//! several replicas, the decision may have been made on another one).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::arm_stats::{Observation, UnitStats};
use crate::experiment::Arm;
use crate::ports::BoxFuture;
use crate::prediction::Prediction;
use crate::routing::{Route, UnitKind};

/// Where an outcome was credited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credit {
    pub kind: UnitKind,
    pub id: String,
    pub arm: Arm,
}

/// Why a posted outcome was not recorded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutcomeError {
    #[error(
        "decision {0} is not awaiting an outcome (unknown, too old, not in an experiment or rollout, or HOLD / rejected)"
    )]
    Unknown(Uuid),
    #[error("decision {0} already has an outcome")]
    AlreadyRecorded(Uuid),
    /// The store shared by the replicas is needed to credit it exactly once, and cannot be
    /// reached; nothing was credited.
    #[error("decision {0} cannot be credited now: {1}; retry")]
    Unavailable(Uuid, String),
}

/// What a rollout candidate's shadow run of a decision came to.
#[derive(Debug, Clone, Copy)]
pub enum ShadowRun<'a> {
    /// The candidate decided; `agreed` when its action matches the served one.
    Decided {
        observation: &'a Observation,
        agreed: bool,
    },
    /// The candidate failed on the decision's features.
    Failed,
}

/// See the module docs.
pub trait ArmRecorder: Send + Sync {
    /// A decision was answered (approved or rejected): credit it to its route's arms and,
    /// when it opened a position, remember it for its outcome.
    fn decided(&self, prediction: &Prediction);

    /// A routed request got no decision.
    fn failed(&self, route: &Route);

    /// A shadow run of the candidate whose stage measurements are `candidate`.
    fn shadowed(&self, candidate: &UnitStats, run: ShadowRun<'_>);

    /// The realized return of the position a decision opened, credited to its arms (once, on
    /// whichever replica it is posted to).
    fn outcome(
        &self,
        decision_id: Uuid,
        realized_return: f64,
    ) -> BoxFuture<'_, Result<Vec<Credit>, OutcomeError>>;
}
