//! A decision as the native API's `tradeserve.v1.Decision`, from the JSON the REST API
//! answers (and the idempotency store keeps), so that both protocols carry the same fields
//! and values: every number survives the trip exactly (shortest round-trip formatting), and
//! a field the REST answer gains without a place in the message fails a test, not silently.

use serde_json::{Map, Value};
use tonic::Status;
use tradeserve_grpc::tradeserve::v1 as pb;

/// The decision (the REST body, `error` included when the risk checks refused it).
pub fn decision(json: &Map<String, Value>) -> Result<pb::Decision, Status> {
    let text = |k: &str| str_of(json, k);
    Ok(pb::Decision {
        decision_id: text("decision_id")?,
        symbol: text("symbol")?,
        action: action(&text("action")?)? as i32,
        confidence: num(json, "confidence")?,
        recommended_quantity: json
            .get("recommended_quantity")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("recommended_quantity"))?,
        regime_probabilities: Some(regime(obj(json, "regime_probabilities")?)?),
        strategy_weights: Some(weights(obj(json, "strategy_weights")?)?),
        risk_validation: opt_obj(json, "risk_validation").map(risk).transpose()?,
        metadata: Some(metadata(obj(json, "metadata")?)?),
        explanation: opt_obj(json, "explanation").map(explanation).transpose()?,
        repeat: json.get("repeat").and_then(Value::as_bool).unwrap_or(false),
        error: opt_obj(json, "error").map(error).transpose()?,
    })
}

/// The protobuf enum of an action's JSON name.
pub fn action(name: &str) -> Result<pb::Action, Status> {
    match name {
        "BUY" => Ok(pb::Action::Buy),
        "SELL" => Ok(pb::Action::Sell),
        "HOLD" => Ok(pb::Action::Hold),
        other => Err(Status::internal(format!("unknown action {other:?}"))),
    }
}

fn missing(field: &str) -> Status {
    Status::internal(format!("decision without {field}"))
}

fn str_of(m: &Map<String, Value>, k: &str) -> Result<String, Status> {
    m.get(k)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| missing(k))
}

fn num(m: &Map<String, Value>, k: &str) -> Result<f64, Status> {
    m.get(k).and_then(Value::as_f64).ok_or_else(|| missing(k))
}

fn obj<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a Map<String, Value>, Status> {
    opt_obj(m, k).ok_or_else(|| missing(k))
}

fn opt_obj<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Map<String, Value>> {
    m.get(k).and_then(Value::as_object)
}

fn regime(m: &Map<String, Value>) -> Result<pb::RegimeProbabilities, Status> {
    Ok(pb::RegimeProbabilities {
        bull: num(m, "bull")?,
        bear: num(m, "bear")?,
        sideways: num(m, "sideways")?,
        entropy: num(m, "entropy")?,
    })
}

fn weights(m: &Map<String, Value>) -> Result<pb::StrategyWeights, Status> {
    Ok(pb::StrategyWeights {
        bull_specialist: num(m, "bull_specialist")?,
        bear_specialist: num(m, "bear_specialist")?,
        sideways_specialist: num(m, "sideways_specialist")?,
    })
}

fn risk(m: &Map<String, Value>) -> Result<pb::RiskValidation, Status> {
    let checks = obj(m, "checks")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let warnings = m
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(pb::RiskValidation {
        approved: m.get("approved").and_then(Value::as_bool).unwrap_or(false),
        warnings,
        checks,
    })
}

fn metadata(m: &Map<String, Value>) -> Result<pb::Metadata, Status> {
    let model_versions = obj(m, "model_versions")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let experiment = opt_obj(m, "experiment")
        .map(|e| -> Result<_, Status> {
            Ok(pb::ExperimentRef {
                id: str_of(e, "id")?,
                arm: str_of(e, "arm")?,
            })
        })
        .transpose()?;
    let rollout = opt_obj(m, "rollout")
        .map(|r| -> Result<_, Status> {
            Ok(pb::RolloutRef {
                id: str_of(r, "id")?,
                stage: str_of(r, "stage")?,
                arm: str_of(r, "arm")?,
                bucket: r
                    .get("bucket")
                    .and_then(Value::as_u64)
                    .and_then(|b| u32::try_from(b).ok())
                    .ok_or_else(|| missing("rollout.bucket"))?,
            })
        })
        .transpose()?;
    Ok(pb::Metadata {
        model_version: str_of(m, "model_version")?,
        latency_ms: num(m, "latency_ms")?,
        timestamp: str_of(m, "timestamp")?,
        model_versions,
        experiment,
        rollout,
        features_as_of: str_of(m, "features_as_of")?,
    })
}

fn explanation(m: &Map<String, Value>) -> Result<pb::Explanation, Status> {
    let values = obj(m, "values")?;
    // In the players' order (a JSON object here is sorted by name).
    let values = tradeserve_core::explain::player_names()
        .filter_map(|name| {
            Some(pb::Attribution {
                name: name.to_owned(),
                value: values.get(name)?.as_f64()?,
            })
        })
        .collect();
    Ok(pb::Explanation {
        method: str_of(m, "method")?,
        output: action(&str_of(m, "output")?)? as i32,
        base_value: num(m, "base_value")?,
        values,
    })
}

fn error(m: &Map<String, Value>) -> Result<pb::Error, Status> {
    Ok(pb::Error {
        code: str_of(m, "code")?,
        message: str_of(m, "message")?,
        field: m.get("field").and_then(Value::as_str).map(str::to_owned),
    })
}
