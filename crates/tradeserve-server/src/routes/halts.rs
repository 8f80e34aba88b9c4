//! `/api/v1/halts`: trading halts. `POST` creates one (a scope and a reason), `GET` lists
//! them, `DELETE /api/v1/halts/{id}` releases one — with `control.halt_release_approvals = 2`,
//! the first operator's release is recorded (202, still active) and a second, different
//! operator's releases it (200). Each change is a control event with its actor; replicas apply
//! it from the control store ([`tradeserve_core::halt`]). Also the repeated-execution latch's
//! halt ([`latch`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tradeserve_core::control::commands::{CreateHalt, ReleaseHalt};
use tradeserve_core::halt::{HaltScope, HaltSpec, HaltStatus};

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
    let command = CreateHalt {
        spec,
        unless_in_force: false,
    };
    let view = state.control.execute(command.into(), &actor).await?;
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

/// The repeated-execution latch tripped on `symbol` (a decision failed `repeated_execution`):
/// halt the symbol, as the actor `risk`, unless a halt of it is in force already (here, or
/// stored by another replica meanwhile). Off the request path; at most one attempt per
/// symbol at a time on this replica.
pub fn latch(state: &Arc<AppState>, symbol: &str, why: &str) {
    let in_force = state.control.view().halts.iter().any(|h| {
        h.is_active() && matches!(&h.scope, HaltScope::Symbol { symbol: s } if s == symbol)
    });
    if in_force || !state.latching.lock().insert(symbol.to_owned()) {
        return;
    }
    let (state, symbol, why) = (Arc::clone(state), symbol.to_owned(), why.to_owned());
    tokio::spawn(async move {
        let spec = HaltSpec {
            scope: HaltScope::Symbol {
                symbol: symbol.clone(),
            },
            reason: format!("repeated_execution: {why}"),
        };
        let actor = Actor {
            who: "risk".into(),
            reason: spec.reason.clone(),
        };
        let command = CreateHalt {
            spec,
            unless_in_force: true,
        };
        match state.control.execute(command.into(), &actor).await {
            Ok(_) => {
                tracing::warn!(%symbol, "repeated-execution latch: symbol halted until an operator releases it")
            }
            Err(crate::control::PlaneError::Command(_)) => {}
            Err(e) => {
                tracing::error!(%symbol, error = %e, "repeated-execution latch: the halt could not be stored; the latch keeps refusing the symbol's orders meanwhile")
            }
        }
        state.latching.lock().remove(&symbol);
    });
}
