//! Operations endpoints: liveness, readiness, metrics and the OpenAPI document.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tradeserve_core::model_set::{BackendInfo, BackendState, RemoteModel};
use tradeserve_core::types::Role;
use tradeserve_models::remote::ModelStatus;
use utoipa::ToSchema;

use crate::error::{ApiError, Envelope, json_response};
use crate::openapi::responses::Guarded;
use crate::registry::RegistryStatus;
use crate::state::AppState;

/// `GET /health/live`.
#[derive(Serialize, ToSchema)]
pub struct Live {
    #[schema(value_type = String, pattern = "^live$")]
    status: &'static str,
}

/// The process is up
#[utoipa::path(get, path = "/health/live", tag = "operations", security(),
    responses((status = 200, description = "live", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "live" })
}

/// `GET /health/ready`: ready, and how what it depends on is doing.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    #[schema(value_type = String, pattern = "^ready$")]
    status: &'static str,
    /// With models from MLflow: whether the registry answers (models may be stale when not).
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<RegistryStatus>,
    /// Only when a role is served remotely: per role, its backend, version, circuit and the
    /// version's status from its server at the steward's last sweep. Readiness itself does
    /// not depend on them: a model server shared by every replica being down would otherwise
    /// remove every replica from the load balancer, turning a clear 503 `backend_unavailable`
    /// into refused connections.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    backends: BTreeMap<Role, RemoteRole>,
    /// With the live feed: symbols by status.
    #[serde(skip_serializing_if = "Option::is_none")]
    feed: Option<Feed>,
}

/// A role served by a remote model server.
#[derive(Serialize, ToSchema)]
pub struct RemoteRole {
    pub backend: BackendInfo,
    pub version: String,
    #[serde(flatten)]
    pub health: RemoteHealth,
}

/// How a remote role's backend is doing (`/health/ready` and `GET /api/v1/models` alike).
#[derive(Serialize, ToSchema)]
pub struct RemoteHealth {
    pub state: BackendState,
    /// What the role's server said about the version at the steward's last sweep
    /// (`models.remote.status_interval`): TorchServe's management API (registered, with READY
    /// workers: its `/ping` says Healthy even while a worker crash-loops), the Open Inference
    /// Protocol's model-ready endpoint or TF Serving's model status, missing, or unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_status: Option<ModelStatus>,
}

impl RemoteHealth {
    /// `remote`'s circuit now, and its server's last word on the version (the steward's).
    pub fn of(remote: &dyn RemoteModel, state: &AppState) -> RemoteHealth {
        RemoteHealth {
            state: remote.state(),
            model_status: state.steward.status(&remote.backend().endpoint),
        }
    }
}

/// The live feed's symbols by status.
#[derive(Serialize, ToSchema)]
pub struct Feed {
    symbols: usize,
    live: usize,
    warming_up: usize,
    stale: usize,
}

/// Models loaded and not draining
#[utoipa::path(get, path = "/health/ready", tag = "operations", security((), ("apiKey" = [])),
    responses(
        (status = 200, description = "ready", body = Ready),
        Guarded,
        (status = 503, description = "not_ready, with the reason", body = Envelope),
    ))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Result<Json<Ready>, ApiError> {
    state
        .is_ready()
        .map_err(|reason| ApiError::not_ready(&reason.to_string()))?;
    let feed = state.live.as_ref().map(|live| {
        let status = live.status();
        let count = |s: &str| status.iter().filter(|x| x.status == s).count();
        Feed {
            symbols: status.len(),
            live: count("live"),
            warming_up: count("warming_up"),
            stale: count("stale"),
        }
    });
    Ok(Json(Ready {
        status: "ready",
        // Serving, but say when the registry is unreachable (models may be stale).
        registry: state.registry.as_ref().map(|r| r.status()),
        backends: remote_roles(&state),
        feed,
    }))
}

/// Every role of the champion served by a remote backend.
fn remote_roles(state: &AppState) -> BTreeMap<Role, RemoteRole> {
    let Some(set) = state.control.champion() else {
        return BTreeMap::new();
    };
    set.models()
        .iter()
        .filter_map(|m| {
            let remote = m.remote.as_ref()?;
            Some((
                m.info.role,
                RemoteRole {
                    backend: remote.backend().clone(),
                    version: m.info.version.clone(),
                    health: RemoteHealth::of(remote.as_ref(), state),
                },
            ))
        })
        .collect()
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("apiKey" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
        Guarded,
    ))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    state.refresh_ready();
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::internal(format!("cannot render metrics: {e}")))?;
    let mut res = (StatusCode::OK, text).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
        Guarded,
    ))]
pub async fn openapi() -> Response {
    json_response(
        StatusCode::OK,
        crate::openapi::document().as_bytes().to_vec(),
    )
}
