//! Operations endpoints: health, metrics, OpenAPI, the active models and the symbols served.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tradeserve_core::ModelInfo;

use crate::error::{ApiError, json_response};
use crate::registry::ReloadError;
use crate::state::AppState;

/// The OpenAPI 3 description of every endpoint.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match (state.is_ready(), &state.registry) {
        (Ok(()), None) => Json(json!({"status": "ready"})).into_response(),
        // Serving, but say when the registry is unreachable (models may be stale).
        (Ok(()), Some(r)) => {
            Json(json!({"status": "ready", "registry": r.status()})).into_response()
        }
        (Err(reason), _) => ApiError::not_ready(&reason).into_response(),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.refresh_ready();
    match state.metrics.render() {
        Ok(text) => {
            let mut res = (StatusCode::OK, text).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        Err(e) => ApiError::internal(format!("cannot render metrics: {e}")).into_response(),
    }
}

pub async fn openapi() -> Response {
    json_response(StatusCode::OK, OPENAPI.as_bytes().to_vec())
}

pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    let Some(set) = state.control.champion() else {
        return ApiError::not_ready("models are not loaded").into_response();
    };
    let models: BTreeMap<&str, &ModelInfo> = set
        .models()
        .iter()
        .map(|m| (m.info.role.as_str(), &m.info))
        .collect();
    match &state.registry {
        None => Json(json!({ "source": "bundled", "models": models })).into_response(),
        Some(r) => Json(json!({
            "source": "mlflow",
            "tracking_uri": r.tracking_uri(),
            "registry": r.status(),
            "previous": r.previous.load().as_ref().map(|p| p.versions().as_ref().clone()),
            "models": models,
        }))
        .into_response(),
    }
}

/// `POST /api/v1/models/reload`: re-resolve the registry aliases now.
pub async fn reload(State(state): State<Arc<AppState>>) -> Response {
    let Some(manager) = state.registry.clone() else {
        return Json(json!({"status": "unchanged", "source": "bundled"})).into_response();
    };
    match manager.reload(&state).await {
        Ok(outcome) => Json(outcome).into_response(),
        Err(ReloadError::Unavailable(m)) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", m)
                .into_response()
        }
        Err(ReloadError::Refused(m)) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "model_refused", m).into_response()
        }
    }
}

pub async fn symbols(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({ "symbols": state.symbols })).into_response()
}
