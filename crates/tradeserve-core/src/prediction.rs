//! What one decision request comes to: the [`Outcome`] (approved or rejected), where the
//! time went ([`StageTimings`]), the route and snapshot it used ([`Prediction`]), or why it
//! got no decision ([`Failed`]). The pipeline makes them; the arm recorder and the HTTP
//! handler read them.

use std::time::Duration;

use crate::decision::Decision;
use crate::error::{EmitError, PredictError};
use crate::routing::Route;
use crate::snapshot::FeatureSnapshot;
use crate::types::RoleSet;

/// Time spent in each stage of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    pub parse: Duration,
    pub features: Duration,
    pub inference: Duration,
    pub risk: Duration,
    /// Zero unless the request asked for an explanation.
    pub explain: Duration,
}

/// A decision the risk checks approved (HTTP 200) or rejected (HTTP 403).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Approved(Decision),
    Rejected(Decision),
}

impl Outcome {
    pub fn decision(&self) -> &Decision {
        match self {
            Outcome::Approved(d) | Outcome::Rejected(d) => d,
        }
    }

    pub fn decision_mut(&mut self) -> &mut Decision {
        match self {
            Outcome::Approved(d) | Outcome::Rejected(d) => d,
        }
    }
}

/// A finished request: the outcome, where the time went, and the arms it was routed to.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub outcome: Outcome,
    pub timings: StageTimings,
    pub route: Route,
    /// The feature snapshot the decision used (for outcome tracking).
    pub snapshot: FeatureSnapshot,
    /// Set when the event could not be recorded and the policy is to serve anyway.
    pub unrecorded: Option<EmitError>,
    /// Remote roles whose backend failed, answered by their in-process copy.
    pub fell_back: RoleSet,
}

/// A request that got no decision, with the route it had been given (`None` when it failed
/// before routing: bad request, unknown symbol, feature source down).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failed {
    pub error: PredictError,
    pub route: Option<Route>,
}

impl From<PredictError> for Failed {
    fn from(error: PredictError) -> Failed {
        Failed { error, route: None }
    }
}
