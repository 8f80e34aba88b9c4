//! `POST /api/v1/outcomes`: the realized return of a decision, credited to its arms.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tradeserve_core::control::ArmRecorder;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::body::JsonBody;
use crate::state::AppState;

/// One outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostedOutcome {
    pub decision_id: Uuid,
    /// Return of the position the decision opened (profit / notional; positive = gain).
    pub realized_return: f64,
}

pub async fn post(
    State(state): State<Arc<AppState>>,
    JsonBody(o): JsonBody<PostedOutcome>,
) -> Result<Json<Value>, ApiError> {
    if !o.realized_return.is_finite() || o.realized_return.abs() > 10.0 {
        return Err(ApiError::invalid_value(
            "realized_return",
            "realized_return must be a finite fraction with |r| <= 10",
        ));
    }
    let credited = state.arms.outcome(o.decision_id, o.realized_return).await?;
    Ok(Json(
        json!({"decision_id": o.decision_id, "credited": credited}),
    ))
}
