//! `POST /api/v1/outcomes`: the realized return of a decision, credited to its arms.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tradeserve_core::control::ArmRecorder;
use tradeserve_core::control::recorder::Credit;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, Envelope};
use crate::openapi::responses::{Guarded, JsonBodyErrors};
use crate::routes::body::JsonBody;
use crate::state::AppState;

/// One outcome.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostedOutcome {
    pub decision_id: Uuid,
    /// Return of the position the decision opened (profit / notional; positive = gain).
    #[schema(minimum = -10, maximum = 10)]
    pub realized_return: f64,
}

/// Where the outcome was credited.
#[derive(Debug, Serialize, ToSchema)]
pub struct Credited {
    decision_id: Uuid,
    credited: Vec<Credit>,
}

/// Realized return of a decision, credited to its experiment and rollout arms
///
/// For approved BUY/SELL decisions routed to an experiment or rollout, among the recent ones
/// (`control.outcome_window`). One outcome per decision; with `control.derive_outcomes` the
/// embedded replay records it at decision time.
#[utoipa::path(post, path = "/api/v1/outcomes", tag = "experiments",
    request_body = PostedOutcome,
    responses(
        (status = 200, description = "Credited", body = Credited),
        JsonBodyErrors, Guarded,
        (status = 403, description = "forbidden: the API key lacks the trader role", body = Envelope),
        (status = 404, description = "unknown_decision: not awaiting an outcome (unknown, too old, HOLD or rejected; with several replicas, also one made on another replica less than control.fleet_interval ago: retry)", body = Envelope),
        (status = 409, description = "outcome_exists", body = Envelope),
        (status = 422, description = "Invalid field (error.field names it): unknown_field, missing_field, invalid_type, invalid_value", body = Envelope),
        (status = 503, description = "outcome_unavailable: the decision was published to the replicas' shared store (control.store = \"redis\") and the store cannot be reached to credit it exactly once; nothing was credited, retry", body = Envelope),
    ))]
pub async fn post(
    State(state): State<Arc<AppState>>,
    JsonBody(o): JsonBody<PostedOutcome>,
) -> Result<Json<Credited>, ApiError> {
    if !o.realized_return.is_finite() || o.realized_return.abs() > 10.0 {
        return Err(ApiError::invalid_value(
            "realized_return",
            "realized_return must be a finite fraction with |r| <= 10",
        ));
    }
    let credited = state.arms.outcome(o.decision_id, o.realized_return).await?;
    Ok(Json(Credited {
        decision_id: o.decision_id,
        credited,
    }))
}
