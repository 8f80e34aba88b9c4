//! `POST /api/v1/predict`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use tradeserve_core::{Decision, Outcome};

use crate::app::Arrival;
use crate::error::{ApiError, ErrorBody, json_response};
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

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::body_too_large(limit))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("cannot read request body: {e}"),
        )),
    }
}

pub async fn predict(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(arrival) = request.extensions().get::<Arrival>().copied() else {
        return ApiError::internal("request arrival time missing").into_response();
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body_limit) {
        return ApiError::body_too_large(state.body_limit).into_response();
    }
    let Ok(_permit) = state.admission.try_acquire() else {
        return ApiError::overloaded().into_response();
    };
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(&state);
    let body = match read_body(request.into_body(), state.body_limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(models) = state.models.load_full() else {
        return ApiError::not_ready("models are not loaded").into_response();
    };
    match state
        .pipeline
        .predict(&models, &body, arrival.instant, arrival.wall)
        .await
    {
        Ok(prediction) => {
            let decision = prediction.outcome.decision();
            let approved = matches!(prediction.outcome, Outcome::Approved(_));
            state
                .metrics
                .observe_decision(decision.action, approved, &prediction.timings);
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
        Err(e) => ApiError::from(e).into_response(),
    }
}
