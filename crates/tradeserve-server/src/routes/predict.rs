//! `POST /api/v1/predict`: the pipeline and the answer, behind the admission layer
//! ([`crate::routes::admit`]), which has read the body and started the decision's clock.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use tradeserve_core::pipeline::{Failed, Prediction};
use tradeserve_core::stats::Observation;
use tradeserve_core::types::Action;
use tradeserve_core::{Decision, Outcome};

use crate::error::{ApiError, ErrorBody, json_response};
use crate::routes::admit::Arrival;
use crate::state::AppState;

/// A 403 body: the full decision plus the error.
#[derive(Serialize)]
struct Rejected<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    error: ErrorBody,
}

/// Decide for a request the admission layer let in (its body read, its arrival stamped).
pub async fn predict(
    State(state): State<Arc<AppState>>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = headers
        .get("x-client-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128);
    let routing = state
        .control
        .routing()
        .ok_or_else(|| ApiError::not_ready("models are not loaded"))?;
    let result = state
        .pipeline
        .predict(&routing, &body, arrival.instant, arrival.wall, client)
        .await;
    answer(&state, result)
}

/// The response for a pipeline result; a returned decision is credited to its arms.
fn answer(state: &AppState, result: Result<Prediction, Failed>) -> Result<Response, ApiError> {
    match result {
        Ok(prediction) => {
            let decision = prediction.outcome.decision();
            let approved = matches!(prediction.outcome, Outcome::Approved(_));
            state
                .metrics
                .observe_decision(decision.action, approved, &prediction.timings);
            if prediction.unrecorded.is_some() {
                state.metrics.decisions_unrecorded.inc();
            }
            measure(state, &prediction);
            let serialized = match &prediction.outcome {
                Outcome::Approved(d) => serde_json::to_vec(d).map(|b| (StatusCode::OK, b)),
                Outcome::Rejected(d) => {
                    let error = ErrorBody {
                        code: "risk_rejected",
                        message: "the decision failed one or more risk checks".into(),
                        field: None,
                    };
                    serde_json::to_vec(&Rejected { decision: d, error })
                        .map(|b| (StatusCode::FORBIDDEN, b))
                }
            };
            let (status, body) = serialized
                .map_err(|e| ApiError::internal(format!("cannot serialize decision: {e}")))?;
            Ok(json_response(status, body))
        }
        Err(failed) => {
            if let Some(route) = &failed.route {
                for (stats, arm) in route.arms() {
                    stats.arm(arm).record_error();
                }
            }
            Err(ApiError::from(failed.error))
        }
    }
}

/// Credit a decision to its experiment and rollout arms (a few uncontended locks, no await).
fn measure(state: &AppState, p: &Prediction) {
    let route = &p.route;
    if route.experiment.is_none() && route.rollout.is_none() {
        return;
    }
    let d = p.outcome.decision();
    let approved = d.risk_validation.as_ref().map(|v| v.approved);
    let obs = Observation {
        action: d.action,
        confidence: d.confidence,
        approved,
        latency_us: Some((d.metadata.latency_ms * 1e3) as u64),
        inference_us: u64::try_from(p.timings.inference.as_micros()).unwrap_or(u64::MAX),
    };
    let m = &state.metrics.control;
    if let Some(t) = &route.experiment {
        t.stats.arm(t.arm).record(&obs);
        m.arm_decisions[0][t.arm.index()].inc();
    }
    if let Some(t) = &route.rollout {
        t.stats.arm(t.arm).record(&obs);
        m.arm_decisions[1][t.arm.index()].inc();
    }
    let derived = if state.derive_outcomes && d.action != Action::Hold {
        state
            .pipeline
            .feature_source()
            .next_bar_return(d.symbol.as_str(), p.snapshot.as_of)
    } else {
        None
    };
    state.outcomes.track(
        d.decision_id,
        route,
        d.action,
        approved.unwrap_or(true),
        derived,
    );
}
