//! `/api/v1/rollouts…` and the kill switch `POST /api/v1/rollback`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tradeserve_core::experiment::Arm;
use tradeserve_core::rollout::{Rollout, RolloutSpec};

use crate::control::{Actor, Command};
use crate::error::ApiError;
use crate::routes::body::Id;
use crate::routes::change;
use crate::state::AppState;

/// A rollout with this replica's gate evaluation and the current stage's measurements.
fn view(state: &AppState, r: &Rollout) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert(
            "last_gate".into(),
            serde_json::to_value(state.control.last_gate(&r.rollout_id)).unwrap_or(Value::Null),
        );
        let stats = state
            .control
            .rollout_stats(&r.rollout_id, r.stage)
            .map(|s| {
                json!({
                    "stage": r.stage,
                    "control": s.arm(Arm::Control).snapshot(),
                    "candidate": s.arm(Arm::Treatment).snapshot(),
                })
            });
        map.insert("stage_stats".into(), stats.unwrap_or(Value::Null));
        map.insert("candidate_share".into(), json!(r.stage.candidate_share()));
    }
    v
}

pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    let all = state.control.view();
    let rollouts: Vec<Value> = all.rollouts.iter().map(|r| view(&state, r)).collect();
    Json(json!({ "rollouts": rollouts })).into_response()
}

pub async fn get(State(state): State<Arc<AppState>>, Id(id): Id) -> Response {
    match state.control.view().rollout(&id) {
        Some(r) => Json(view(&state, r)).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout {id}"),
        )
        .into_response(),
    }
}

/// Apply a change and answer with the rollout (`id`, or the newest one when created).
async fn run(
    state: &AppState,
    command: Command,
    actor: &Actor,
    id: Option<&str>,
    status: StatusCode,
) -> Response {
    change::apply(state, command, actor, status, |v| {
        let r = match id {
            Some(id) => v.rollout(id),
            None => v.rollouts.last(),
        };
        r.map(|r| view(state, r))
    })
    .await
}

pub async fn create(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (who, spec): (String, RolloutSpec) = match change::spec(request, state.body).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let reason = spec
        .description
        .clone()
        .unwrap_or_else(|| "rollout created".into());
    let actor = Actor { who, reason };
    run(
        &state,
        Command::CreateRollout(spec),
        &actor,
        None,
        StatusCode::CREATED,
    )
    .await
}

/// `promote`, `pause` or `rollback` of one rollout.
async fn act(
    state: Arc<AppState>,
    id: String,
    request: Request,
    make: fn(String) -> Command,
    default: &str,
) -> Response {
    let actor = match change::actor(request, state.body, default).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    run(&state, make(id.clone()), &actor, Some(&id), StatusCode::OK).await
}

pub async fn promote(State(state): State<Arc<AppState>>, Id(id): Id, request: Request) -> Response {
    act(state, id, request, Command::Promote, "manual promote").await
}

pub async fn pause(State(state): State<Arc<AppState>>, Id(id): Id, request: Request) -> Response {
    act(state, id, request, Command::Pause, "manual pause").await
}

pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    request: Request,
) -> Response {
    act(state, id, request, Command::RollBack, "manual rollback").await
}

/// The kill switch: every experiment and rollout back to control now.
pub async fn kill_switch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let actor = match change::actor(request, state.body, "kill switch").await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    change::apply(&state, Command::KillSwitch, &actor, StatusCode::OK, |v| {
        Some(json!({
            "revision": v.revision,
            "kill_switch": v.kill_switch,
            // false: applied on this replica only (the store is down); stored when it is back.
            "persisted": !state.control.kill_pending(),
        }))
    })
    .await
}
