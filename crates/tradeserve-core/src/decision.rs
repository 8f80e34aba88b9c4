//! What a decision looks like on the wire (the `POST /api/v1/predict` response) and in the
//! audit trail (the decision event).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::experiment::Arm;
use crate::explain::{EventExplanation, Explanation};
use crate::risk::{CheckStatus, RiskValidation};
use crate::routing::{ExperimentRef, RolloutRef};
use crate::schema::{FEATURE_WIDTH, FEATURES, HIT_RATES};
use crate::snapshot::FeatureSnapshot;
use crate::types::{Action, Role, Specialist, Symbol};

/// Version of the decision event's schema (`schemas/decision_event.schema.json`).
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// `regime_probabilities` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegimeProbabilities {
    pub bull: f64,
    pub bear: f64,
    pub sideways: f64,
    /// Shannon entropy / ln 3.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub entropy: f64,
}

/// `strategy_weights` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StrategyWeights {
    pub bull_specialist: f64,
    pub bear_specialist: f64,
    pub sideways_specialist: f64,
}

/// `metadata.experiment` of a response: the experiment and arm a decision was assigned to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metadata {
    /// Dominant specialist and its registry version, e.g. `bull_specialist_v2`.
    #[cfg_attr(feature = "openapi", schema(example = "bull_specialist_v1"))]
    pub model_version: String,
    /// Server-side latency from request arrival to response serialization.
    pub latency_ms: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Every role's version (role → registry version).
    pub model_versions: Arc<BTreeMap<Role, String>>,
    /// The experiment and arm the decision was assigned to (null without one).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub experiment: Option<ExperimentArm>,
    /// The active rollout, its stage and this decision's arm (treatment: the candidate
    /// decided); null without one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rollout: Option<RolloutRef>,
    /// Close time of the bar the features describe.
    #[serde(with = "time::serde::rfc3339")]
    pub features_as_of: OffsetDateTime,
}

/// A trading decision, exactly as `POST /api/v1/predict` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    /// UUID v7 (time-ordered).
    pub decision_id: Uuid,
    pub symbol: Symbol,
    pub action: Action,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub confidence: f64,
    /// Shares, a multiple of the lot size; 0 for HOLD.
    pub recommended_quantity: u64,
    pub regime_probabilities: RegimeProbabilities,
    pub strategy_weights: StrategyWeights,
    /// Null when the request's `risk_check` is false.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub risk_validation: Option<RiskValidation>,
    pub metadata: Metadata,
    /// Only when the request's `explain` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
    /// Present (true) only when this is the decision first answered for the request's
    /// idempotency key, answered again: nothing was booked or recorded this time.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
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

impl<'de> Deserialize<'de> for FeatureValues {
    /// The map by name; every model input must be there, and nothing else.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FeatureValues, D::Error> {
        let map = BTreeMap::<String, f64>::deserialize(d)?;
        let get = |name: &str| {
            map.get(name)
                .copied()
                .ok_or_else(|| D::Error::custom(format!("feature {name} missing")))
        };
        let mut features = [0.0; FEATURE_WIDTH];
        for (slot, name) in features.iter_mut().zip(FEATURES) {
            *slot = get(name)?;
        }
        let mut hit_rates = [0.0; HIT_RATES.len()];
        for (slot, name) in hit_rates.iter_mut().zip(HIT_RATES) {
            *slot = get(name)?;
        }
        if map.len() != FEATURE_WIDTH + HIT_RATES.len() {
            return Err(D::Error::custom(
                "features hold names that are not model inputs",
            ));
        }
        Ok(FeatureValues {
            features,
            hit_rates,
        })
    }
}

/// `risk_checks` of an event: pass (including warn) → true, fail → false, per check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskCheckFlags {
    pub position_limit: bool,
    pub concentration: bool,
    pub order_notional: bool,
    pub restricted_list: bool,
    pub daily_order_count: bool,
    pub kill_switch: bool,
    /// The checks added later default to passed when an older event is read back.
    #[serde(default = "passed")]
    pub order_quantity: bool,
    #[serde(default = "passed")]
    pub desk_daily_notional: bool,
    #[serde(default = "passed")]
    pub order_rate: bool,
    #[serde(default = "passed")]
    pub repeated_execution: bool,
}

fn passed() -> bool {
    true
}

impl From<&RiskValidation> for RiskCheckFlags {
    fn from(v: &RiskValidation) -> RiskCheckFlags {
        let ok = |s: CheckStatus| s != CheckStatus::Fail;
        let c = &v.checks;
        RiskCheckFlags {
            position_limit: ok(c.position_limit),
            concentration: ok(c.concentration),
            order_notional: ok(c.order_notional),
            restricted_list: ok(c.restricted_list),
            daily_order_count: ok(c.daily_order_count),
            kill_switch: ok(c.kill_switch),
            order_quantity: ok(c.order_quantity),
            desk_daily_notional: ok(c.desk_daily_notional),
            order_rate: ok(c.order_rate),
            repeated_execution: ok(c.repeated_execution),
        }
    }
}

/// The `event_type` of a decision event: always `trading_decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DecisionEventType {
    #[default]
    #[serde(rename = "trading_decision")]
    TradingDecision,
}

/// One decision on the audit trail, with everything needed to re-run it; read
/// back (replay, forensics) by the same type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    pub schema_version: u32,
    pub event_type: DecisionEventType,
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
    pub risk_checks: Option<RiskCheckFlags>,
    pub risk_warnings: Vec<String>,
    pub approved: bool,
    pub model_versions: Arc<BTreeMap<Role, String>>,
    pub experiment: Option<ExperimentRef>,
    pub rollout: Option<RolloutRef>,
    /// The largest attributions, when the request asked for an explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<EventExplanation>,
    pub latency_ms: f64,
    pub client_id: Option<String>,
    /// The API key id that asked (absent without authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The request's idempotency key (`client_order_id` or `Idempotency-Key`), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<String>,
}

impl DecisionEvent {
    /// The features the decision was made on, as the ensemble takes them.
    pub fn snapshot(&self) -> FeatureSnapshot {
        FeatureSnapshot {
            as_of: self.features_as_of,
            price: self.price,
            features: self.features.features,
            hit_rates: self.features.hit_rates,
        }
    }
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
