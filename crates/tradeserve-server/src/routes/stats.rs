//! `GET /api/v1/stats`: what the dashboard shows, as JSON: the decision route's last minute
//! (latency percentiles, rates, statuses, actions, risk rejections, a per-second series), and
//! the state around it (readiness, models, experiment and rollout, event sinks, capacity).
//! Also the sampler that feeds the last minute (one sample a second, off the request path),
//! and `GET /dashboard`, the page that draws it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tradeserve_core::experiment::Arm;

use crate::state::AppState;

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

pub async fn stats(State(state): State<Arc<AppState>>) -> Json<Value> {
    state.refresh_ready();
    let window = state.window.view(&state.metrics.sample());
    let capacity = state.metrics.capacity.get();
    let ready = state.is_ready();
    Json(json!({
        "at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "ready": ready.is_ok(),
        "not_ready_reason": ready.err().map(|why| why.to_string()),
        "capacity_per_second": capacity,
        "load": if capacity > 0.0 { window.decisions_per_second / capacity } else { 0.0 },
        "window": window,
        "models": models(&state),
        "control": control(&state),
        "events": events(&state),
        "risk": risk(&state),
        "halts": state.control.view().halts.iter().filter(|h| h.is_active()).collect::<Vec<_>>(),
    }))
}

/// Whether risk-checked orders can be checked (the books' history, the shared ledger).
fn risk(state: &AppState) -> Value {
    let health = state.pipeline.risk_health();
    json!({"available": health.is_ok(), "reason": health.err()})
}

fn models(state: &AppState) -> Value {
    json!({
        "source": if state.registry.is_some() { "mlflow" } else { "bundled" },
        "registry_up": state.registry.as_ref().map(|_| state.metrics.registry_up.get() == 1),
        "versions": state.control.champion_versions(),
    })
}

/// The running experiment and the active rollout, with this replica's decisions per arm.
fn control(state: &AppState) -> Value {
    let view = state.control.view();
    let arms = |s: Option<Arc<tradeserve_core::arm_stats::UnitStats>>| {
        s.map(|s| {
            json!({
                "control": s.arm(Arm::Control).counts().0,
                "treatment": s.arm(Arm::Treatment).counts().0,
            })
        })
    };
    let experiment = view.running_experiment().map(|e| {
        json!({
            "id": e.experiment_id,
            "role": e.role,
            "traffic_split": e.traffic_split,
            "decisions": arms(state.control.experiment_stats(&e.experiment_id)),
        })
    });
    let rollout = view.active_rollout().map(|r| {
        json!({
            "id": r.rollout_id,
            "stage": r.stage,
            "candidate_share": r.stage.candidate_share(),
            "decisions": arms(state.control.rollout_stats(&r.rollout_id, r.stage)),
            "last_verdict": state.control.last_gate(&r.rollout_id).map(|g| g.verdict),
        })
    });
    json!({
        "experiment": experiment,
        "rollout": rollout,
        "kill_switch": view.kill_switch.is_some(),
    })
}

fn events(state: &AppState) -> Value {
    let m = &state.metrics;
    let sink = |s: &tradeserve_events::SinkMetrics| {
        json!({
            "backlog": s.backlog.get(),
            "unavailable": s.unavailable.get() == 1,
            "written": s.written.get(),
        })
    };
    let kafka = state.kafka_sink.then(|| {
        let mut k = sink(&m.kafka.sink);
        k["spool_backlog"] = json!(m.kafka.spool_backlog.get());
        k["spooled"] = json!(m.kafka.spooled.get());
        k["delivered"] = json!(m.kafka.delivered.get());
        k
    });
    json!({ "audit_log": sink(&m.events), "kafka": kafka })
}
