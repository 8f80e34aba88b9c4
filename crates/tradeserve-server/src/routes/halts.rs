//! `/api/v1/halts`: trading halts. `POST` creates one (a scope and a reason), `GET` lists
//! them, `DELETE /api/v1/halts/{id}` releases one — with `control.halt_release_approvals = 2`,
//! the first operator's release is recorded (202, still active) and a second, different
//! operator's releases it (200). Each change is a control event with its actor; replicas apply
//! it from the control store ([`tradeserve_core::halt`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tradeserve_core::control::commands::{CreateHalt, ReleaseHalt};
use tradeserve_core::halt::{HaltSpec, HaltStatus};

use crate::control::Actor;
use crate::error::ApiError;
use crate::routes::body::{Id, JsonBody, Requested, Who};
use crate::state::AppState;

/// Every halt kept (the active ones and the last released), oldest first.
pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let view = state.control.view();
    let active = view.halts.iter().filter(|h| h.is_active()).count();
    Json(json!({ "active": active, "halts": view.halts }))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Who(who): Who,
    JsonBody(spec): JsonBody<HaltSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = Actor {
        who,
        reason: spec.reason.clone(),
    };
    let view = state
        .control
        .execute(CreateHalt(spec).into(), &actor)
        .await?;
    let halt = view
        .halts
        .last()
        .ok_or_else(|| ApiError::internal("halt missing after the change"))?;
    Ok((StatusCode::CREATED, Json(halt.clone())))
}

pub async fn release(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let actor = requested.actor("released");
    let command = ReleaseHalt {
        id: id.clone(),
        approvals: state.halt_release_approvals,
    };
    let view = state.control.execute(command.into(), &actor).await?;
    let halt = view
        .halt(&id)
        .ok_or_else(|| ApiError::internal("halt missing after the change"))?;
    let status = match halt.status {
        HaltStatus::ReleaseRequested => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(halt.clone())))
}
