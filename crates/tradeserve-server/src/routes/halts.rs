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
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tradeserve_core::control::commands::{CreateHalt, ReleaseHalt};
use tradeserve_core::halt::{Halt, HaltScope, HaltSpec, HaltStatus};
use utoipa::ToSchema;

use crate::control::Actor;
use crate::error::{ApiError, Envelope};
use crate::openapi::responses::{
    ACTOR, CONTROL_UNAVAILABLE, Guarded, JsonBodyErrors, OperatorOnly, OptionalReason,
};
use crate::routes::body::Why;
use crate::routes::body::{Id, JsonBody, Requested, Who};
use crate::state::AppState;

/// `GET /api/v1/halts`.
#[derive(Serialize, ToSchema)]
pub struct Halts<'a> {
    /// Halts in force (active or release_requested).
    active: usize,
    /// Oldest first.
    halts: &'a [Halt],
}

/// Trading halts: every active one and the last 50 released
#[utoipa::path(get, path = "/api/v1/halts", tag = "halts",
    responses((status = 200, description = "Oldest first", body = Halts), Guarded))]
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    let view = state.control.view();
    let active = view.halts.iter().filter(|h| h.is_active()).count();
    Json(Halts {
        active,
        halts: &view.halts,
    })
    .into_response()
}

/// Halt trading: every order in the scope fails its kill_switch check until released
///
/// Stored in the control store: with `control.store = "redis"` every replica applies it within
/// its next poll (`control.poll_interval`, 500 ms), and it survives restarts. HOLDs and
/// decisions with `risk_check` false are not orders and are answered as before. A control
/// event (subject halt, action created) records the actor and reason.
#[utoipa::path(post, path = "/api/v1/halts", tag = "halts",
    params(("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body = HaltSpec,
    responses(
        (status = 201, description = "In force on this replica now", body = Halt),
        JsonBodyErrors, Guarded, OperatorOnly,
        (status = 422, description = "Invalid field (error.field names it): unknown_field, missing_field, invalid_type, invalid_value (scope, reason)", body = Envelope),
        (status = 503, description = CONTROL_UNAVAILABLE, body = Envelope),
    ))]
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

/// Release a trading halt
///
/// With `control.halt_release_approvals = 2`, the first operator's release is recorded (202,
/// the halt stays in force) and a second, different operator releases it (200).
#[utoipa::path(delete, path = "/api/v1/halts/{id}", tag = "halts",
    params(("id" = String, Path, description = "halt id"), ("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body(content = Option<Why>, description = "Optional: why"),
    responses(
        (status = 200, description = "Released: orders in its scope trade again", body = Halt),
        (status = 202, description = "Release requested: a second, different operator must release it", body = Halt),
        OptionalReason, Guarded, OperatorOnly,
        (status = 404, description = "not_found: no such halt", body = Envelope),
        (status = 409, description = "conflict: released already, or the same operator asked for its release already", body = Envelope),
        (status = 503, description = CONTROL_UNAVAILABLE, body = Envelope),
    ))]
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
