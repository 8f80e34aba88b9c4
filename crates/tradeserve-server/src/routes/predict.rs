//! `POST /api/v1/predict`: read the body (bounded), then admission, the pipeline, and the
//! answer. The decision's clock starts once the body has been read.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tradeserve_core::pipeline::{Failed, Prediction};
use tradeserve_core::stats::Observation;
use tradeserve_core::types::Action;
use tradeserve_core::{Decision, Outcome};

use crate::app::Arrival;
use crate::error::{ApiError, ErrorBody, json_response};
use crate::routes::body::read_body;
use crate::state::AppState;

/// A 403 body: the full decision plus the error.
#[derive(Serialize)]
struct Rejected<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    error: ErrorBody,
}

/// Decrements the in-flight gauge however the handler ends.
struct InFlight<'a>(&'a AppState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

pub async fn predict(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body.bytes) {
        return ApiError::body_too_large(state.body.bytes).into_response();
    }
    let client = request
        .headers()
        .get("x-client-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned);
    // The body first (bounded in size and time): a slow client holds no admission permit
    // and is never charged to the decision deadline, which starts once the body is here.
    let body = match read_body(request.into_body(), state.body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let arrival = Arrival::now();
    let Ok(_permit) = state.admission.try_acquire() else {
        return arrival.stamp(ApiError::overloaded().into_response());
    };
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(&state);
    let Some(routing) = state.control.routing() else {
        return arrival.stamp(ApiError::not_ready("models are not loaded").into_response());
    };
    let result = state
        .pipeline
        .predict(
            &routing,
            &body,
            arrival.instant,
            arrival.wall,
            client.as_deref(),
        )
        .await;
    arrival.stamp(answer(&state, result))
}

/// The response for a pipeline result; a returned decision is credited to its arms.
fn answer(state: &AppState, result: Result<Prediction, Failed>) -> Response {
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
            match serialized {
                Ok((status, body)) => json_response(status, body),
                Err(e) => {
                    ApiError::internal(format!("cannot serialize decision: {e}")).into_response()
                }
            }
        }
        Err(failed) => {
            if let Some(route) = &failed.route {
                for (stats, arm) in route.arms() {
                    stats.arm(arm).record_error();
                }
            }
            ApiError::from(failed.error).into_response()
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
