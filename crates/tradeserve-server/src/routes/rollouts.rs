//! `/api/v1/rollouts…` and the kill switch `POST /api/v1/rollback`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use tradeserve_core::control::KillRecord;
use tradeserve_core::control::commands::{CreateRollout, KillSwitch, Pause, Promote, RollBack};
use tradeserve_core::rollout::{Rollout, RolloutSpec, Stage};
use tradeserve_core::stats::ArmSnapshot;
use utoipa::ToSchema;

use crate::control::{Actor, Command};
use crate::error::{ApiError, Envelope};
use crate::openapi::responses::{
    ACTOR, CONFLICT, Guarded, INVALID_DEFINITION, JsonBodyErrors, LOADING_UNAVAILABLE,
    OperatorOnly, OptionalReason,
};
use crate::routes::body::{Id, JsonBody, Requested, Who, Why};
use crate::routes::{change, experiments};
use crate::state::AppState;

/// A rollout as the API shows it: as stored, with this replica's last gate evaluation, its
/// candidate share and the current stage's measurements.
#[derive(Serialize, ToSchema)]
#[schema(as = Rollout)]
pub struct RolloutView {
    #[serde(flatten)]
    rollout: Rollout,
    /// 0, 0.1, 0.5 or 1.
    candidate_share: f64,
    /// The current stage's measurements (the fleet's with `control.store = "redis"`); null
    /// while no replica has recorded any.
    stage_stats: Option<StageStats>,
}

/// One stage's measurements per arm.
#[derive(Serialize, ToSchema)]
pub struct StageStats {
    stage: Stage,
    /// `fleet` or `this replica` (as an experiment report's).
    #[schema(value_type = String)]
    scope: &'static str,
    /// Replicas whose shares are merged.
    replicas: usize,
    fleet_error: Option<String>,
    control: ArmSnapshot,
    candidate: ArmSnapshot,
}

/// A rollout with the last gate evaluation and the current stage's measurements (the fleet's
/// when there is a fleet store; `stage_stats` is null while no replica has recorded any).
async fn view(state: &AppState, r: &Rollout) -> RolloutView {
    let measured = state.control.rollout_measured(&r.rollout_id, r.stage).await;
    let stage_stats = (!measured.replicas.is_empty()).then(|| {
        let [control, candidate] = measured.arms.each_ref().map(|a| a.snapshot());
        StageStats {
            stage: r.stage,
            scope: experiments::scope(&measured),
            replicas: measured.replicas.len(),
            fleet_error: measured.error.clone(),
            control,
            candidate,
        }
    });
    let mut rollout = r.clone();
    rollout.last_gate = state.control.last_gate(&r.rollout_id);
    RolloutView {
        rollout,
        candidate_share: r.stage.candidate_share(),
        stage_stats,
    }
}

/// `GET /api/v1/rollouts`.
#[derive(Serialize, ToSchema)]
pub struct Rollouts {
    rollouts: Vec<RolloutView>,
}

/// All rollouts (active and recent)
#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts",
    responses((status = 200, description = "{rollouts: [...]}", body = Rollouts), Guarded))]
pub async fn list(State(state): State<Arc<AppState>>) -> Json<Rollouts> {
    let all = state.control.view();
    let mut rollouts = Vec::with_capacity(all.rollouts.len());
    for r in &all.rollouts {
        rollouts.push(view(&state, r).await);
    }
    Json(Rollouts { rollouts })
}

/// One rollout, with this replica's last gate evaluation and the stage's measurements
#[utoipa::path(get, path = "/api/v1/rollouts/{id}", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses(
        (status = 200, description = "The rollout", body = RolloutView),
        Guarded,
        (status = 404, description = "No such rollout", body = Envelope),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
) -> Result<Json<RolloutView>, ApiError> {
    match state.control.view().rollout(&id) {
        Some(r) => Ok(Json(view(&state, r).await)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout {id}"),
        )),
    }
}

/// The 502 of a rollout change.
const ALIAS_MOVE: &str = "alias_move_failed (completing with MLflow)";

/// What a rollout action (promote, pause, rollback) answers when it is not applied.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // described, never built: the control plane's errors map to these
pub enum ActionRefused<'a> {
    #[response(status = 404, description = "No such rollout")]
    NotFound(Envelope<'a>),
    #[response(status = 409, description = CONFLICT)]
    Conflict(Envelope<'a>),
    #[response(status = 502, description = ALIAS_MOVE)]
    AliasMove(Envelope<'a>),
    #[response(status = 503, description = LOADING_UNAVAILABLE)]
    Unavailable(Envelope<'a>),
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

/// Start a progressive rollout in shadow
///
/// shadow → canary (10%) → partial (50%) → full (100%) → completed (the candidate becomes
/// the champion). Each stage's gate (duration, decisions, error rate, latency, agreement,
/// outcomes) promotes it (auto_promote) or rolls it back. The candidate's versions are loaded
/// and verified before it is stored.
#[utoipa::path(post, path = "/api/v1/rollouts", tag = "rollouts",
    params(("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body = RolloutSpec,
    responses(
        (status = 201, description = "Created, in shadow", body = RolloutView),
        JsonBodyErrors, Guarded, OperatorOnly,
        (status = 409, description = CONFLICT, body = Envelope),
        (status = 422, description = INVALID_DEFINITION, body = Envelope),
        (status = 503, description = LOADING_UNAVAILABLE, body = Envelope),
    ))]
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

/// Move to the next stage now (and resume a paused rollout)
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/promote", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id"), ("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body(content = Option<Why>, description = "Optional: why"),
    responses(
        (status = 200, description = "The rollout after the change", body = RolloutView),
        OptionalReason, Guarded, OperatorOnly, ActionRefused,
    ))]
pub async fn promote(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let command = Promote { id: id.clone() }.into();
    act(&state, &id, requested, command, "manual promote").await
}

/// Hold at the current stage: no automatic promotion (gates still roll back)
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/pause", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id"), ("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body(content = Option<Why>, description = "Optional: why"),
    responses(
        (status = 200, description = "The rollout after the change", body = RolloutView),
        OptionalReason, Guarded, OperatorOnly, ActionRefused,
    ))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let command = Pause { id: id.clone() }.into();
    act(&state, &id, requested, command, "manual pause").await
}

/// All traffic back to control now
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/rollback", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id"), ("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body(content = Option<Why>, description = "Optional: why"),
    responses(
        (status = 200, description = "The rollout after the change", body = RolloutView),
        OptionalReason, Guarded, OperatorOnly, ActionRefused,
    ))]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let command = RollBack { id: id.clone() }.into();
    act(&state, &id, requested, command, "manual rollback").await
}

/// `POST /api/v1/rollback`.
#[derive(Serialize, ToSchema)]
pub struct KillSwitchAnswer {
    revision: u64,
    kill_switch: Option<KillRecord>,
    /// false: the control store is down; applied on this replica at once and stored by its
    /// poller when the store answers.
    persisted: bool,
}

/// Kill switch: every experiment and rollout back to control now
#[utoipa::path(post, path = "/api/v1/rollback", tag = "rollouts",
    params(("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body(content = Option<Why>, description = "Optional: why"),
    responses(
        (status = 200, description = "The kill-switch record", body = KillSwitchAnswer),
        OptionalReason, Guarded, OperatorOnly,
        (status = 503, description = "not_ready (models not loaded), control_store_unavailable", body = Envelope),
    ))]
pub async fn kill_switch(
    State(state): State<Arc<AppState>>,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let actor = requested.actor("kill switch");
    change::apply(&state, KillSwitch.into(), &actor, StatusCode::OK, |v| {
        Some(KillSwitchAnswer {
            revision: v.revision,
            kill_switch: v.kill_switch.clone(),
            persisted: !state.control.kill_pending(),
        })
    })
    .await
}
