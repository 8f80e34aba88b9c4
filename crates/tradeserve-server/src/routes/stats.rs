//! `GET /api/v1/stats`: what the dashboard shows, as JSON: the decision route's last minute
//! (latency percentiles, rates, statuses, actions, risk rejections, a per-second series), and
//! the state around it (readiness, models, experiment and rollout, event sinks, capacity).
//! Also the sampler that feeds the last minute (one sample a second, off the request path),
//! and `GET /dashboard`, the page that draws it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;
use tradeserve_core::arm_stats::UnitStats;
use tradeserve_core::experiment::Arm;
use tradeserve_core::halt::Halt;
use tradeserve_core::rollout::{Stage, Verdict};
use tradeserve_core::types::Role;
use utoipa::ToSchema;

use crate::openapi::responses::Guarded;
use crate::state::AppState;
use crate::stats_window::WindowView;

/// The dashboard page: one file, no external resources, drawn from `GET /api/v1/stats`.
const DASHBOARD: &str = include_str!("../../assets/dashboard.html");

/// Take a sample of the decision route's counters every `interval`.
pub async fn sample_every(state: Arc<AppState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        state.window.push(state.metrics.sample());
    }
}

/// The built-in dashboard (one HTML page, no external resources; it reads
/// `GET /api/v1/stats` every second)
#[utoipa::path(get, path = "/dashboard", tag = "operations", security(),
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub async fn dashboard() -> Response {
    let mut res = (StatusCode::OK, DASHBOARD).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
        ),
    );
    res
}

/// `GET /api/v1/stats`.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    ready: bool,
    not_ready_reason: Option<String>,
    /// `server.capacity_per_second`.
    capacity_per_second: f64,
    /// Decisions per second over capacity.
    load: f64,
    window: WindowView,
    models: ModelsSummary,
    control: ControlSummary,
    events: EventsSummary,
    risk: RiskSummary,
    /// The trading halts in force on this replica.
    halts: Vec<Halt>,
    /// Inputs and decisions against the champion's training and backtest (null until the
    /// monitor's first pass, a few seconds after start).
    drift: Option<crate::drift::DriftSummary>,
}

/// Where the champion comes from and its versions.
#[derive(Serialize, ToSchema)]
pub struct ModelsSummary {
    /// `bundled` or `mlflow`.
    #[schema(value_type = String)]
    source: &'static str,
    /// Whether MLflow answered at the last poll (null with bundled models).
    registry_up: Option<bool>,
    versions: BTreeMap<Role, String>,
}

/// The running experiment and the active rollout, with this replica's decisions per arm.
#[derive(Serialize, ToSchema)]
pub struct ControlSummary {
    experiment: Option<ExperimentSummary>,
    rollout: Option<RolloutSummary>,
    kill_switch: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ExperimentSummary {
    id: String,
    role: Role,
    traffic_split: f64,
    /// This replica's decisions per arm.
    decisions: Option<ArmCounts>,
}

#[derive(Serialize, ToSchema)]
pub struct RolloutSummary {
    id: String,
    stage: Stage,
    candidate_share: f64,
    /// This replica's decisions per arm.
    decisions: Option<ArmCounts>,
    /// The verdict of this replica's last gate evaluation.
    last_verdict: Option<Verdict>,
}

/// Decisions per arm.
#[derive(Serialize, ToSchema)]
pub struct ArmCounts {
    control: u64,
    treatment: u64,
}

/// The event sinks.
#[derive(Serialize, ToSchema)]
pub struct EventsSummary {
    audit_log: SinkSummary,
    /// With the Kafka sink.
    kafka: Option<SinkSummary>,
}

/// One event sink: events waiting, whether it is refusing, events written (Kafka: also its
/// spool).
#[derive(Serialize, ToSchema)]
pub struct SinkSummary {
    backlog: i64,
    unavailable: bool,
    written: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    spool_backlog: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spooled: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<u64>,
}

/// Whether risk-checked orders can be checked: false while this replica's books have missing
/// history, or the shared ledger in Redis was reset or lost and not yet rebuilt.
#[derive(Serialize, ToSchema)]
pub struct RiskSummary {
    available: bool,
    reason: Option<String>,
}

/// The dashboard's figures: the decision route's last minute and the state around it
///
/// `POST /api/v1/predict` over the last minute (sampled every second from the counters
/// `/metrics` exports), readiness, models, experiment and rollout, event sinks, capacity.
#[utoipa::path(get, path = "/api/v1/stats", tag = "operations",
    responses(
        (status = 200, description = "POST /api/v1/predict over the last minute, and the state around it", body = Stats),
        Guarded,
    ))]
pub async fn stats(State(state): State<Arc<AppState>>) -> Json<Stats> {
    state.refresh_ready();
    let window = state.window.view(&state.metrics.sample());
    let capacity = state.metrics.capacity.get();
    let ready = state.is_ready();
    let health = state.pipeline.risk_health();
    Json(Stats {
        at: OffsetDateTime::now_utc(),
        ready: ready.is_ok(),
        not_ready_reason: ready.err().map(|why| why.to_string()),
        capacity_per_second: capacity,
        load: if capacity > 0.0 {
            window.decisions_per_second / capacity
        } else {
            0.0
        },
        window,
        models: models(&state),
        control: control(&state),
        events: events(&state),
        risk: RiskSummary {
            available: health.is_ok(),
            reason: health.err().map(|why| why.0),
        },
        halts: state
            .control
            .view()
            .halts
            .iter()
            .filter(|h| h.is_active())
            .cloned()
            .collect(),
        drift: state.drift.summary().map(|s| (*s).clone()),
    })
}

fn models(state: &AppState) -> ModelsSummary {
    ModelsSummary {
        source: if state.registry.is_some() {
            "mlflow"
        } else {
            "bundled"
        },
        registry_up: state
            .registry
            .as_ref()
            .map(|_| state.metrics.registry_up.get() == 1),
        versions: state.control.champion_versions(),
    }
}

/// This replica's decisions per arm of a unit.
fn arms(s: Option<Arc<UnitStats>>) -> Option<ArmCounts> {
    s.map(|s| ArmCounts {
        control: s.arm(Arm::Control).counts().0,
        treatment: s.arm(Arm::Treatment).counts().0,
    })
}

fn control(state: &AppState) -> ControlSummary {
    let view = state.control.view();
    let experiment = view.running_experiment().map(|e| ExperimentSummary {
        id: e.experiment_id.clone(),
        role: e.role,
        traffic_split: e.traffic_split,
        decisions: arms(state.control.experiment_stats(&e.experiment_id)),
    });
    let rollout = view.active_rollout().map(|r| RolloutSummary {
        id: r.rollout_id.clone(),
        stage: r.stage,
        candidate_share: r.stage.candidate_share(),
        decisions: arms(state.control.rollout_stats(&r.rollout_id, r.stage)),
        last_verdict: state.control.last_gate(&r.rollout_id).map(|g| g.verdict),
    });
    ControlSummary {
        experiment,
        rollout,
        kill_switch: view.kill_switch.is_some(),
    }
}

fn events(state: &AppState) -> EventsSummary {
    let m = &state.metrics;
    let sink = |s: &tradeserve_events::SinkMetrics| SinkSummary {
        backlog: s.backlog.get(),
        unavailable: s.unavailable.get() == 1,
        written: s.written.get(),
        spool_backlog: None,
        spooled: None,
        delivered: None,
    };
    let kafka = state.kafka_sink.then(|| SinkSummary {
        spool_backlog: Some(m.kafka.spool_backlog.get()),
        spooled: Some(m.kafka.spooled.get()),
        delivered: Some(m.kafka.delivered.get()),
        ..sink(&m.kafka.sink)
    });
    EventsSummary {
        audit_log: sink(&m.events),
        kafka,
    }
}
