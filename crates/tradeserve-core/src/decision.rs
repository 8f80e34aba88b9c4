//! What a decision looks like on the wire (the `POST /api/v1/predict` response) and in the
//! audit trail (the decision event of DESIGN.md §8).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::experiment::Arm;
use crate::explain::{EventExplanation, Explanation};
use crate::risk::{CheckStatus, RiskValidation};
use crate::routing::{ExperimentRef, RolloutRef};
use crate::schema::{FEATURE_WIDTH, FEATURES, HIT_RATES};
use crate::types::{Action, Role, Specialist, Symbol};

/// Version of the decision event's schema (`schemas/decision_event.schema.json`).
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// `regime_probabilities` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegimeProbabilities {
    pub bull: f64,
    pub bear: f64,
    pub sideways: f64,
    /// Shannon entropy / ln 3.
    pub entropy: f64,
}

/// `strategy_weights` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StrategyWeights {
    pub bull_specialist: f64,
    pub bear_specialist: f64,
    pub sideways_specialist: f64,
}

/// `metadata.experiment` of a response: the experiment and arm a decision was assigned to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentArm {
    pub id: String,
    pub arm: Arm,
}

/// `shadow` of a [`ShadowEvent`]: what the rollout's candidate decided for the same features.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowResult {
    /// `None` when the candidate failed (see `error`).
    pub action: Option<Action>,
    pub confidence: Option<f64>,
    pub quantity: Option<u64>,
    /// Whether the candidate chose the returned decision's action.
    pub agreed: bool,
    pub model_versions: Arc<BTreeMap<Role, String>>,
    pub inference_us: u64,
    pub error: Option<String>,
}

/// `metadata` of a response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metadata {
    /// Dominant specialist and its registry version, e.g. `bull_specialist_v2`.
    pub model_version: String,
    /// Server-side latency from request arrival to response serialization.
    pub latency_ms: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub model_versions: Arc<BTreeMap<Role, String>>,
    pub experiment: Option<ExperimentArm>,
    /// `+`: the rollout arm, when a rollout is active.
    pub rollout: Option<RolloutRef>,
    #[serde(with = "time::serde::rfc3339")]
    pub features_as_of: OffsetDateTime,
}

/// A trading decision, exactly as `POST /api/v1/predict` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub decision_id: Uuid,
    pub symbol: Symbol,
    pub action: Action,
    pub confidence: f64,
    pub recommended_quantity: u64,
    pub regime_probabilities: RegimeProbabilities,
    pub strategy_weights: StrategyWeights,
    pub risk_validation: Option<RiskValidation>,
    pub metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// The model inputs a decision used, serialized as a map from feature name to value.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureValues {
    pub features: [f64; FEATURE_WIDTH],
    pub hit_rates: [f64; HIT_RATES.len()],
}

impl Serialize for FeatureValues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(FEATURE_WIDTH + HIT_RATES.len()))?;
        for (name, v) in FEATURES.iter().zip(&self.features) {
            map.serialize_entry(name, v)?;
        }
        for (name, v) in HIT_RATES.iter().zip(&self.hit_rates) {
            map.serialize_entry(name, v)?;
        }
        map.end()
    }
}

/// Pass (including warn) → true, fail → false, per check name.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskCheckFlags(pub Option<RiskValidation>);

impl Serialize for RiskCheckFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            None => s.serialize_none(),
            Some(v) => {
                let checks = v.checks.iter();
                let mut map = s.serialize_map(Some(checks.len()))?;
                for (name, status) in checks {
                    map.serialize_entry(name, &(status != CheckStatus::Fail))?;
                }
                map.end()
            }
        }
    }
}

/// One decision on the audit trail (DESIGN.md §8), with everything needed to re-run it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionEvent {
    pub schema_version: u32,
    pub event_type: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub decision_id: Uuid,
    pub symbol: Symbol,
    pub action: Action,
    pub quantity: u64,
    pub confidence: f64,
    pub regime_probs: RegimeProbabilities,
    pub strategy_weights: StrategyWeights,
    pub features: FeatureValues,
    #[serde(with = "time::serde::rfc3339")]
    pub features_as_of: OffsetDateTime,
    /// Price the quantity and risk checks used.
    pub price: f64,
    pub strategy_override: Option<Specialist>,
    /// `null` when the request asked for no risk check.
    pub risk_checks: RiskCheckFlags,
    pub risk_warnings: Vec<String>,
    pub approved: bool,
    pub model_versions: Arc<BTreeMap<Role, String>>,
    pub experiment: Option<ExperimentRef>,
    pub rollout: Option<RolloutRef>,
    /// The largest attributions, when the request asked for an explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<EventExplanation>,
    pub latency_ms: f64,
    pub client_id: Option<String>,
}

/// Version of the shadow event's schema (`schemas/shadow_event.schema.json`).
pub const SHADOW_SCHEMA_VERSION: u32 = 1;

/// What a rollout's candidate decided for a shadowed decision, recorded after the response.
/// The decision's own event was recorded before it was answered; this one annotates it
/// (joined on `decision_id`), so losing it in a crash loses a comparison, never a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowEvent {
    pub schema_version: u32,
    /// Always `shadow_result`.
    pub event_type: &'static str,
    /// When the candidate ran.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub decision_id: Uuid,
    pub symbol: Symbol,
    /// The action that was returned to the client.
    pub action: Action,
    pub rollout: RolloutRef,
    pub shadow: ShadowResult,
}
