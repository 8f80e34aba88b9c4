//! `/api/v1/experiments…`: create, read, change and stop A/B experiments, and their reports.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tradeserve_core::control::commands::{CreateExperiment, StopExperiment, UpdateExperiment};
use tradeserve_core::experiment::{Experiment, ExperimentSpec, ExperimentUpdate};
use tradeserve_core::stats::{self, ArmSnapshot};

use crate::control::{Actor, Command};
use crate::error::ApiError;
use crate::routes::body::{Id, JsonBody, Requested, Who};
use crate::routes::change;
use crate::state::AppState;
use tradeserve_core::fleet::Measured;

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no experiment {id}"),
    )
}

fn found(state: &AppState, id: &str) -> Result<Experiment, ApiError> {
    state
        .control
        .view()
        .experiment(id)
        .cloned()
        .ok_or_else(|| not_found(id))
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "experiments": state.control.view().experiments }))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
) -> Result<Json<Experiment>, ApiError> {
    Ok(Json(found(&state, &id)?))
}

/// Apply a change and answer with the experiment (`id`, or the newest one when created).
async fn run(
    state: &AppState,
    command: Command,
    actor: &Actor,
    id: Option<&str>,
    status: StatusCode,
) -> Result<impl IntoResponse + use<>, ApiError> {
    change::apply(state, command, actor, status, |view| {
        let e = match id {
            Some(id) => view.experiment(id),
            None => view.experiments.last(),
        };
        e.cloned()
    })
    .await
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Who(who): Who,
    JsonBody(spec): JsonBody<ExperimentSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let reason = spec
        .description
        .clone()
        .unwrap_or_else(|| "experiment created".into());
    let actor = Actor { who, reason };
    let command = CreateExperiment(spec).into();
    run(&state, command, &actor, None, StatusCode::CREATED).await
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    Who(who): Who,
    JsonBody(update): JsonBody<ExperimentUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = Actor {
        who,
        reason: "experiment updated".into(),
    };
    let command = UpdateExperiment {
        id: id.clone(),
        update,
    }
    .into();
    run(&state, command, &actor, Some(&id), StatusCode::OK).await
}

pub async fn stop(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
    requested: Requested,
) -> Result<impl IntoResponse, ApiError> {
    let actor = requested.actor("experiment stopped");
    let command = StopExperiment { id: id.clone() }.into();
    run(&state, command, &actor, Some(&id), StatusCode::OK).await
}

/// What a measurement covers: `fleet` (every replica's share), or `this replica` (no fleet
/// store, or it could not be read: then `fleet_error` says why).
pub fn scope(m: &Measured) -> &'static str {
    if m.fleet { "fleet" } else { "this replica" }
}

/// The metrics an arm shows, as tracked by the experiment.
fn arm_view(arm: &ArmSnapshot, tracked: &[String]) -> Value {
    let mut v = serde_json::to_value(arm).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        let keep = |k: &str| -> bool {
            let wants = |m: &str| tracked.iter().any(|t| t == m);
            match k {
                "decisions" | "errors" => true,
                "error_rate" => wants("error_rate"),
                "latency_ms" | "inference_p99_us" => wants("latency"),
                "action_mix" => wants("action_mix"),
                "mean_confidence" => wants("confidence"),
                "risk_reject_rate" => wants("risk_reject_rate"),
                "outcomes" | "win_rate" | "mean_return" => wants("win_rate") || wants("sharpe"),
                "sharpe" => wants("sharpe"),
                _ => false,
            }
        };
        map.retain(|k, _| keep(k));
    }
    v
}

pub async fn report(
    State(state): State<Arc<AppState>>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let e = found(&state, &id)?;
    let measured = state.control.experiment_measured(&id).await;
    let [control, treatment] = measured.arms.each_ref().map(|a| a.snapshot());
    let total = control.decisions + treatment.decisions;
    let comparison = stats::compare(&control, &treatment);
    let since = measured
        .since()
        .unwrap_or_else(|| state.control.measuring_since());
    Ok(Json(json!({
        "experiment_id": e.experiment_id,
        "status": e.status,
        "role": e.role,
        "control_model_version": e.control_model_version,
        "treatment_model_version": e.treatment_model_version,
        "traffic_split": e.traffic_split,
        "bucketing": e.bucketing,
        "metrics_to_track": e.metrics_to_track,
        "scope": scope(&measured),
        "replicas": measured.replicas,
        "fleet_error": measured.error,
        "since": since.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "observed_treatment_share": if total == 0 { None } else { Some(treatment.decisions as f64 / total as f64) },
        "arms": {
            "control": arm_view(&control, &e.metrics_to_track),
            "treatment": arm_view(&treatment, &e.metrics_to_track),
        },
        "comparison": comparison,
    })))
}
