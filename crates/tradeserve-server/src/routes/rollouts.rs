//! `/api/v1/rollouts…` and the kill switch `POST /api/v1/rollback`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tradeserve_core::control::commands::{CreateRollout, KillSwitch, Pause, Promote, RollBack};
use tradeserve_core::rollout::{Rollout, RolloutSpec};

use crate::control::{Actor, Command};
use crate::error::ApiError;
use crate::routes::body::{Id, JsonBody, Requested, Who};
use crate::routes::{change, experiments};
use crate::state::AppState;

/// A rollout with the last gate evaluation and the current stage's measurements (the fleet's
/// when there is a fleet store; `stage_stats` is null while no replica has recorded any).
async fn view(state: &AppState, r: &Rollout) -> Value {
    let measured = state.control.rollout_measured(&r.rollout_id, r.stage).await;
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert(
            "last_gate".into(),
            serde_json::to_value(state.control.last_gate(&r.rollout_id)).unwrap_or(Value::Null),
        );
        let stats = (!measured.replicas.is_empty()).then(|| {
            let [control, candidate] = measured.arms.each_ref().map(|a| a.snapshot());
            json!({
                "stage": r.stage,
                "scope": experiments::scope(&measured),
                "replicas": measured.replicas.len(),
                "fleet_error": measured.error,
                "control": control,
                "candidate": candidate,
            })
        });
        map.insert("stage_stats".into(), stats.unwrap_or(Value::Null));
        map.insert("candidate_share".into(), json!(r.stage.candidate_share()));
    }
    v
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let all = state.control.view();
    let mut rollouts = Vec::with_capacity(all.rollouts.len());
    for r in &all.rollouts {
        rollouts.push(view(&state, r).await);
    }
    Json(json!({ "rollouts": rollouts }))
}

pub async fn get(State(state): State<Arc<AppState>>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    match state.control.view().rollout(&id) {
        Some(r) => Ok(Json(view(&state, r).await)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout {id}"),
        )),
    }
}

/// Apply a change and answer with the rollout (`id`, or the newest one when created).
async fn run(
    state: &AppState,
    command: Command,
    actor: &Actor,
    id: Option<&str>,
    status: StatusCode,
) -> Result<impl IntoResponse + use<>, ApiError> {
    let v = state.control.execute(command, actor).await?;
    let r = match id {
        Some(id) => v.rollout(id),
        None => v.rollouts.last(),
    }
    .ok_or_else(|| ApiError::internal("record missing after the change"))?;
    Ok((status, Json(view(state, r).await)))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Who(who): Who,
    JsonBody(spec): JsonBody<RolloutSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let reason = spec
        .description
        .clone()
        .unwrap_or_else(|| "rollout created".into());
    let actor = Actor { who, reason };
    run(
        &state,
        CreateRollout(spec).into(),
        &actor,
        None,
        StatusCode::CREATED,
    )
    .await
}

/// `promote`, `pause` or `rollback` of one rollout, by whoever asked.
async fn act(
    state: &AppState,
    id: &str,
    requested: Requested,
    command: Command,
    default_reason: &str,
) -> Result<impl IntoResponse + use<>, ApiError> {
    let actor = requested.actor(default_reason);
    run(state, command, &actor, Some(id), StatusCode::OK).await
}

pub async fn promote(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let command = Promote { id: id.clone() }.into();
    act(&state, &id, requested, command, "manual promote").await
}

pub async fn pause(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let command = Pause { id: id.clone() }.into();
    act(&state, &id, requested, command, "manual pause").await
}

pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let command = RollBack { id: id.clone() }.into();
    act(&state, &id, requested, command, "manual rollback").await
}

/// The kill switch: every experiment and rollout back to control now.
pub async fn kill_switch(
    State(state): State<Arc<AppState>>,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let actor = requested.actor("kill switch");
    change::apply(&state, KillSwitch.into(), &actor, StatusCode::OK, |v| {
        Some(json!({
            "revision": v.revision,
            "kill_switch": v.kill_switch,
            // false: applied on this replica only (the store is down); stored when it is back.
            "persisted": !state.control.kill_pending(),
        }))
    })
    .await
}
