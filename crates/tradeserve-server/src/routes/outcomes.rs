//! `POST /api/v1/outcomes`: the realized return of a decision, credited to its arms.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::body;
use crate::state::AppState;

/// One outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedOutcome {
    decision_id: Uuid,
    /// Return of the position the decision opened (profit / notional; positive = gain).
    realized_return: f64,
}

pub async fn post(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let o: PostedOutcome = match body::json(request.into_body(), state.body).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    if !o.realized_return.is_finite() || o.realized_return.abs() > 10.0 {
        return ApiError {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            body: crate::error::ErrorBody {
                code: "invalid_value",
                message: "realized_return must be a finite fraction with |r| <= 10".into(),
                field: Some("realized_return".into()),
            },
        }
        .into_response();
    }
    match state.outcomes.post(o.decision_id, o.realized_return) {
        Ok(credited) => {
            Json(json!({"decision_id": o.decision_id, "credited": credited})).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
