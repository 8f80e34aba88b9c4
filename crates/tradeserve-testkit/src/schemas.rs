//! The JSON Schemas of the events and bars (`schemas/`), compiled for tests, and a sample
//! decision event.

use std::path::Path;

/// A decision event with fixed, valid contents, for sink tests.
pub fn sample_event(decision_id: uuid::Uuid, symbol: &str) -> tradeserve_core::DecisionEvent {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use time::OffsetDateTime;
    use tradeserve_core::decision::{FeatureValues, RegimeProbabilities, StrategyWeights};
    use tradeserve_core::types::{Action, Symbol};

    tradeserve_core::DecisionEvent {
        schema_version: 1,
        event_type: tradeserve_core::decision::DecisionEventType::TradingDecision,
        timestamp: OffsetDateTime::UNIX_EPOCH,
        decision_id,
        symbol: Symbol::parse(symbol).expect("a valid test symbol"),
        action: Action::Buy,
        quantity: 10,
        confidence: 0.5,
        regime_probs: RegimeProbabilities {
            bull: 0.5,
            bear: 0.25,
            sideways: 0.25,
            entropy: 0.9,
        },
        strategy_weights: StrategyWeights {
            bull_specialist: 1.0,
            bear_specialist: 0.0,
            sideways_specialist: 0.0,
        },
        features: FeatureValues {
            features: [0.0; 12],
            hit_rates: [0.5; 3],
        },
        features_as_of: OffsetDateTime::UNIX_EPOCH,
        price: 100.0,
        strategy_override: None,
        risk_checks: None,
        risk_warnings: vec![],
        approved: true,
        model_versions: Arc::new(BTreeMap::new()),
        experiment: None,
        rollout: None,
        explanation: None,
        latency_ms: 0.1,
        client_id: None,
        actor: None,
        client_order_id: None,
    }
}

fn schema(file: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("read the schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

/// The published decision-event JSON Schema (`schemas/decision_event.schema.json`), compiled.
pub fn event_schema() -> jsonschema::Validator {
    schema("decision_event.schema.json")
}

/// The published shadow-result JSON Schema (`schemas/shadow_event.schema.json`), compiled.
pub fn shadow_event_schema() -> jsonschema::Validator {
    schema("shadow_event.schema.json")
}

/// The published control-event JSON Schema (`schemas/control_event.schema.json`), compiled.
pub fn control_event_schema() -> jsonschema::Validator {
    schema("control_event.schema.json")
}

/// The published live-bar JSON Schema (`schemas/bar.schema.json`), compiled.
pub fn bar_schema() -> jsonschema::Validator {
    schema("bar.schema.json")
}
