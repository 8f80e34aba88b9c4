//! `/api/v1/experiments…`: create, read, change and stop A/B experiments, and their reports.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tradeserve_core::control::commands::{CreateExperiment, StopExperiment, UpdateExperiment};
use tradeserve_core::experiment::{
    Bucketing, Experiment, ExperimentSpec, ExperimentStatus, ExperimentUpdate,
};
use tradeserve_core::fleet::Contributor;
use tradeserve_core::stats::{self, ArmSnapshot, Comparison};
use tradeserve_core::types::Role;
use utoipa::ToSchema;

use crate::control::{Actor, Command};
use crate::error::{ApiError, Envelope};
use crate::openapi::responses::{
    ACTOR, CONFLICT, CONTROL_UNAVAILABLE, Guarded, INVALID_DEFINITION, JsonBodyErrors,
    LOADING_UNAVAILABLE, OperatorOnly, OptionalReason,
};
use crate::routes::body::{Id, JsonBody, Requested, Who, Why};
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

/// `GET /api/v1/experiments`.
#[derive(Serialize, ToSchema)]
pub struct Experiments<'a> {
    experiments: &'a [Experiment],
}

/// All experiments (running and recently stopped)
#[utoipa::path(get, path = "/api/v1/experiments", tag = "experiments",
    responses((status = 200, description = "{experiments: [...]}", body = Experiments), Guarded))]
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    Json(Experiments {
        experiments: &state.control.view().experiments,
    })
    .into_response()
}

/// One experiment
#[utoipa::path(get, path = "/api/v1/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "experiment id")),
    responses(
        (status = 200, description = "The experiment", body = Experiment),
        Guarded,
        (status = 404, description = "No such experiment", body = Envelope),
    ))]
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

/// Start an A/B experiment
///
/// One running experiment at a time. Both versions are loaded and verified before the
/// experiment is stored, so a missing or broken version is refused here (422), never found by
/// a request.
#[utoipa::path(post, path = "/api/v1/experiments", tag = "experiments",
    params(("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body = ExperimentSpec,
    responses(
        (status = 201, description = "Created, running", body = Experiment),
        JsonBodyErrors, Guarded, OperatorOnly,
        (status = 409, description = CONFLICT, body = Envelope),
        (status = 422, description = INVALID_DEFINITION, body = Envelope),
        (status = 503, description = LOADING_UNAVAILABLE, body = Envelope),
    ))]
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

/// Change a running experiment's split, metrics or description
#[utoipa::path(put, path = "/api/v1/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "experiment id"), ("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body = ExperimentUpdate,
    responses(
        (status = 200, description = "Updated", body = Experiment),
        JsonBodyErrors, Guarded, OperatorOnly,
        (status = 404, description = "No such experiment", body = Envelope),
        (status = 409, description = CONFLICT, body = Envelope),
        (status = 422, description = INVALID_DEFINITION, body = Envelope),
        (status = 503, description = CONTROL_UNAVAILABLE, body = Envelope),
    ))]
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

/// Stop an experiment (all its traffic back to the champion; the record and report stay)
#[utoipa::path(delete, path = "/api/v1/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "experiment id"), ("X-Actor" = Option<String>, Header, description = ACTOR)),
    request_body(content = Option<Why>, description = "Optional: why"),
    responses(
        (status = 200, description = "Stopped", body = Experiment),
        OptionalReason, Guarded, OperatorOnly,
        (status = 404, description = "No such experiment", body = Envelope),
        (status = 409, description = CONFLICT, body = Envelope),
        (status = 503, description = CONTROL_UNAVAILABLE, body = Envelope),
    ))]
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

/// `GET /api/v1/experiments/{id}/report`.
#[derive(Serialize, ToSchema)]
pub struct ExperimentReport<'a> {
    experiment_id: &'a str,
    status: ExperimentStatus,
    role: Role,
    control_model_version: &'a str,
    treatment_model_version: &'a str,
    traffic_split: f64,
    bucketing: Bucketing,
    metrics_to_track: &'a [String],
    /// `fleet`: every replica's share (with `control.store = "redis"`; other replicas' shares
    /// as of their last publish, at most `control.fleet_interval` old); `this replica`: no
    /// fleet store, or it could not be read (then `fleet_error` says why).
    #[schema(value_type = String)]
    scope: &'static str,
    /// The replicas whose shares are merged here.
    replicas: &'a [Contributor],
    /// Why the fleet's shares could not be read (the report then covers this replica alone).
    fleet_error: Option<&'a str>,
    /// When the earliest contributing replica began measuring.
    #[serde(with = "time::serde::rfc3339")]
    since: OffsetDateTime,
    observed_treatment_share: Option<f64>,
    arms: ReportArms,
    comparison: Comparison,
}

/// Each arm, with the metrics the experiment tracks.
#[derive(Serialize, ToSchema)]
pub struct ReportArms {
    #[schema(value_type = ArmSnapshot)]
    control: Value,
    #[schema(value_type = ArmSnapshot)]
    treatment: Value,
}

/// Per-arm metrics and significance
#[utoipa::path(get, path = "/api/v1/experiments/{id}/report", tag = "experiments",
    params(("id" = String, Path, description = "experiment id")),
    responses(
        (status = 200, description = "The report", body = ExperimentReport),
        Guarded,
        (status = 404, description = "No such experiment", body = Envelope),
    ))]
pub async fn report(State(state): State<Arc<AppState>>, Id(id): Id) -> Result<Response, ApiError> {
    let e = found(&state, &id)?;
    let measured = state.control.experiment_measured(&id).await;
    let [control, treatment] = measured.arms.each_ref().map(|a| a.snapshot());
    let total = control.decisions + treatment.decisions;
    let comparison = stats::compare(&control, &treatment);
    let since = measured
        .since()
        .unwrap_or_else(|| state.control.measuring_since());
    Ok(Json(ExperimentReport {
        experiment_id: &e.experiment_id,
        status: e.status,
        role: e.role,
        control_model_version: &e.control_model_version,
        treatment_model_version: &e.treatment_model_version,
        traffic_split: e.traffic_split,
        bucketing: e.bucketing,
        metrics_to_track: &e.metrics_to_track,
        scope: scope(&measured),
        replicas: &measured.replicas,
        fleet_error: measured.error.as_deref(),
        since,
        observed_treatment_share: (total > 0).then(|| treatment.decisions as f64 / total as f64),
        arms: ReportArms {
            control: arm_view(&control, &e.metrics_to_track),
            treatment: arm_view(&treatment, &e.metrics_to_track),
        },
        comparison,
    })
    .into_response())
}
