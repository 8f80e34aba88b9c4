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
use crate::state::AppState;

/// The OpenAPI 3 description of every endpoint.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.is_ready() {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => ApiError::not_ready(reason).into_response(),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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
    let Some(set) = state.models.load_full() else {
        return ApiError::not_ready("models are not loaded").into_response();
    };
    let models: BTreeMap<&str, &ModelInfo> = set
        .models()
        .iter()
        .map(|m| (m.info.role.as_str(), &m.info))
        .collect();
    Json(json!({ "models": models })).into_response()
}

pub async fn symbols(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({ "symbols": state.symbols })).into_response()
}
