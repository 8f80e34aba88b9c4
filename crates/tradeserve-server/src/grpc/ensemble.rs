//! The ensemble as an Open Inference Protocol model (`tradeserve`): the request's tensors and
//! parameters become a `PredictRequest`, decided by [`super::decisions::decide`] (the same
//! pipeline, role, deadline and records as REST), and the decision becomes output tensors.
//!
//! Inputs: `symbol` (BYTES `[1]`, required), `timestamp` (BYTES `[1]`, RFC 3339, optional).
//! Parameters: `risk_check` (bool), `strategy_override` and `client_order_id` (string).
//! Outputs: `decision_id`, `action` (BYTES `[1]`), `confidence` (FP64 `[1]`), `quantity`
//! (UINT64 `[1]`), `approved` (BOOL `[1]`), `regime_probabilities` (FP64 `[3]`: bull, bear,
//! sideways), `strategy_weights` (FP64 `[3]`: bull, bear, sideways specialist). A decision
//! the risk checks refused is answered with `approved` false and the response parameter
//! `error_code` = `risk_rejected`; a repeat (idempotency key) with `repeat` true.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Status};
use tradeserve_grpc::inference as oip;
use tradeserve_grpc::inference::infer_parameter::ParameterChoice;
use tradeserve_grpc::inference::model_metadata_response::TensorMetadata;
use tradeserve_grpc::tradeserve::v1 as pb;

use crate::routes::admit::Arrival;
use crate::state::AppState;

use super::{decisions, status, tensors};

/// The ensemble's inputs, name and datatype (each of shape `[1]`).
pub const INPUTS: [(&str, &str); 2] = [("symbol", "BYTES"), ("timestamp", "BYTES")];

/// The ensemble's outputs: name, datatype, shape.
const OUTPUTS: [(&str, &str, i64); 7] = [
    ("decision_id", "BYTES", 1),
    ("action", "BYTES", 1),
    ("confidence", "FP64", 1),
    ("quantity", "UINT64", 1),
    ("approved", "BOOL", 1),
    ("regime_probabilities", "FP64", 3),
    ("strategy_weights", "FP64", 3),
];

/// The outputs' metadata.
pub fn outputs() -> Vec<TensorMetadata> {
    OUTPUTS
        .iter()
        .map(|(n, d, s)| TensorMetadata {
            name: (*n).into(),
            datatype: (*d).into(),
            shape: vec![*s],
        })
        .collect()
}

/// Decide for the request's symbol.
pub async fn infer(
    state: &Arc<AppState>,
    request: Request<oip::ModelInferRequest>,
    arrival: Arrival,
) -> Result<oip::ModelInferResponse, Status> {
    let (metadata, extensions, r) = request.into_parts();
    let wanted = requested_outputs(&r)?;
    let predict = predict_request(&r)?;
    let decision = decisions::decide(
        state,
        Request::from_parts(metadata, extensions, predict),
        arrival,
    )
    .await?;
    let mut parameters = HashMap::new();
    if let Some(e) = &decision.error {
        parameters.insert("error_code".to_owned(), string(&e.code));
    }
    if decision.repeat {
        parameters.insert(
            "repeat".to_owned(),
            oip::InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(true)),
            },
        );
    }
    let model_version = decision
        .metadata
        .as_ref()
        .map(|m| m.model_version.clone())
        .unwrap_or_default();
    Ok(oip::ModelInferResponse {
        model_name: r.model_name,
        model_version,
        id: r.id,
        parameters,
        outputs: output_tensors(&decision, &wanted),
        raw_output_contents: Vec::new(),
    })
}

fn string(s: &str) -> oip::InferParameter {
    oip::InferParameter {
        parameter_choice: Some(ParameterChoice::StringParam(s.to_owned())),
    }
}

/// The outputs the request asked for (all when it named none); an unknown name is refused.
fn requested_outputs(r: &oip::ModelInferRequest) -> Result<Vec<&'static str>, Status> {
    if r.outputs.is_empty() {
        return Ok(OUTPUTS.iter().map(|o| o.0).collect());
    }
    r.outputs
        .iter()
        .map(|o| {
            OUTPUTS
                .iter()
                .map(|o| o.0)
                .find(|n| *n == o.name)
                .ok_or_else(|| {
                    let names: Vec<&str> = OUTPUTS.iter().map(|o| o.0).collect();
                    status::invalid(
                        "outputs",
                        format!("no output {:?}: one of {}", o.name, names.join(", ")),
                    )
                })
        })
        .collect()
}

/// The `PredictRequest` the tensors and parameters stand for.
fn predict_request(r: &oip::ModelInferRequest) -> Result<pb::PredictRequest, Status> {
    if let Some(t) = r
        .inputs
        .iter()
        .find(|t| !INPUTS.iter().any(|(n, _)| *n == t.name))
    {
        return Err(status::invalid(
            &t.name,
            format!("no input {:?}: symbol, timestamp", t.name),
        ));
    }
    let one = |name: &str| -> Result<Option<String>, Status> {
        let Some((t, raw)) = tensors::input(r, name) else {
            return Ok(None);
        };
        match tensors::bytes(t, raw)?.as_slice() {
            [v] => String::from_utf8(v.clone())
                .map(Some)
                .map_err(|_| status::invalid(name, format!("{name} must be UTF-8 text"))),
            more => Err(status::invalid(
                name,
                format!("{name} must hold one element, not {}", more.len()),
            )),
        }
    };
    let symbol = one("symbol")?
        .ok_or_else(|| status::invalid("symbol", "the input \"symbol\" (BYTES [1]) is required"))?;
    let mut p = pb::PredictRequest {
        symbol,
        timestamp: one("timestamp")?,
        ..Default::default()
    };
    for (name, value) in &r.parameters {
        match (name.as_str(), &value.parameter_choice) {
            ("risk_check", Some(ParameterChoice::BoolParam(b))) => p.risk_check = Some(*b),
            ("strategy_override", Some(ParameterChoice::StringParam(s))) => {
                p.strategy_override = Some(s.clone())
            }
            ("client_order_id", Some(ParameterChoice::StringParam(s))) => {
                p.client_order_id = Some(s.clone())
            }
            _ => {
                return Err(status::invalid(
                    name,
                    format!(
                        "parameter {name:?} is not one of risk_check (bool), strategy_override (string), client_order_id (string)"
                    ),
                ));
            }
        }
    }
    Ok(p)
}

/// The decision's output tensors, in the order asked.
fn output_tensors(
    d: &pb::Decision,
    wanted: &[&str],
) -> Vec<oip::model_infer_response::InferOutputTensor> {
    wanted
        .iter()
        .filter_map(|name| {
            let (_, datatype, shape) = OUTPUTS.iter().find(|o| o.0 == *name)?;
            Some(tensors::output(
                name,
                datatype,
                vec![*shape],
                contents(d, name),
            ))
        })
        .collect()
}

/// One output's values.
fn contents(d: &pb::Decision, name: &str) -> oip::InferTensorContents {
    let mut c = oip::InferTensorContents::default();
    match name {
        "decision_id" => c.bytes_contents = vec![d.decision_id.clone().into_bytes()],
        "action" => {
            let action = pb::Action::try_from(d.action).map_or("", |a| a.as_str_name());
            c.bytes_contents = vec![action.as_bytes().to_vec()];
        }
        "confidence" => c.fp64_contents = vec![d.confidence],
        "quantity" => c.uint64_contents = vec![d.recommended_quantity],
        "approved" => c.bool_contents = vec![d.error.is_none()],
        "regime_probabilities" => {
            let r = d.regime_probabilities.unwrap_or_default();
            c.fp64_contents = vec![r.bull, r.bear, r.sideways];
        }
        _ => {
            let w = d.strategy_weights.unwrap_or_default();
            c.fp64_contents = vec![w.bull_specialist, w.bear_specialist, w.sideways_specialist];
        }
    }
    c
}
