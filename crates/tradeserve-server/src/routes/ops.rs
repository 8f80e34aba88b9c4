//! Operations endpoints: health, metrics, OpenAPI, the active models and the symbols served.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tradeserve_core::ports::FeatureSource;
use tradeserve_core::{LoadedModel, ModelInfo};

use crate::error::{ApiError, json_response};
use crate::registry::ReloadError;
use crate::state::AppState;

/// The OpenAPI 3 description of every endpoint.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

pub async fn ready(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state
        .is_ready()
        .map_err(|reason| ApiError::not_ready(&reason.to_string()))?;
    let mut body = json!({"status": "ready"});
    // Serving, but say when the registry is unreachable (models may be stale) and how the
    // remote backends are doing.
    if let Some(r) = &state.registry {
        body["registry"] = json!(r.status());
    }
    let backends = state.backends();
    if !backends.is_empty() {
        body["backends"] = Value::Object(backends);
    }
    if let Some(live) = &state.live {
        let status = live.status();
        let count = |s: &str| status.iter().filter(|x| x.status == s).count();
        body["feed"] = json!({"symbols": status.len(), "live": count("live"),
            "warming_up": count("warming_up"), "stale": count("stale")});
    }
    Ok(Json(body))
}

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

pub async fn openapi() -> Response {
    json_response(StatusCode::OK, OPENAPI.as_bytes().to_vec())
}

pub async fn models(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let set = state
        .control
        .champion()
        .ok_or_else(|| ApiError::not_ready("models are not loaded"))?;
    let models: BTreeMap<&str, Served<'_>> = set
        .models()
        .iter()
        .map(|m| (m.info.role.as_str(), Served::of(m, &state)))
        .collect();
    Ok(Json(match &state.registry {
        None => json!({ "source": "bundled", "models": models }),
        Some(r) => json!({
            "source": "mlflow",
            "tracking_uri": r.tracking_uri(),
            "registry": r.status(),
            "previous": r.previous.load().as_ref().map(|p| p.versions().as_ref().clone()),
            "models": models,
        }),
    }))
}

/// A role as `GET /api/v1/models` shows it: what was loaded and what serves it.
#[derive(Serialize)]
struct Served<'a> {
    #[serde(flatten)]
    info: &'a ModelInfo,
    backend: Value,
}

impl<'a> Served<'a> {
    fn of(m: &'a LoadedModel, state: &AppState) -> Served<'a> {
        let backend = match &m.remote {
            Some(r) => {
                let mut backend = serde_json::to_value(r.backend()).unwrap_or(Value::Null);
                for (k, v) in state.backend_health(m).unwrap_or_default() {
                    backend[k] = v;
                }
                backend
            }
            None => json!({"kind": "in_process"}),
        };
        Served {
            info: &m.info,
            backend,
        }
    }
}

/// `POST /api/v1/models/reload`: re-resolve the registry aliases now.
pub async fn reload(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let Some(manager) = state.registry.clone() else {
        return Ok(Json(json!({"status": "unchanged", "source": "bundled"})));
    };
    let outcome = manager.reload(state.as_ref()).await.map_err(|e| match e {
        ReloadError::Unavailable(m) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", m)
        }
        ReloadError::Refused(m) => ApiError::new(StatusCode::BAD_GATEWAY, "model_refused", m),
    })?;
    Ok(Json(serde_json::to_value(outcome).map_err(|e| {
        ApiError::internal(format!("cannot serialize the reload outcome: {e}"))
    })?))
}

/// The symbols served: the replay's coverage, or the live feed's state per symbol (newest
/// bar, its age, bars held, status) with the coverage of its retained history.
pub async fn symbols(State(state): State<Arc<AppState>>) -> Json<Value> {
    let Some(live) = &state.live else {
        return Json(json!({ "source": "replay", "symbols": state.symbols }));
    };
    let coverage: BTreeMap<String, _> = live
        .coverage()
        .into_iter()
        .map(|c| (c.symbol.clone(), c))
        .collect();
    let symbols: Vec<Value> = live
        .status()
        .into_iter()
        .map(|s| {
            let mut v = json!(s);
            if let Some(c) = coverage.get(&s.symbol) {
                let c = json!(c);
                v["from"] = c["from"].clone();
                v["to"] = c["to"].clone();
            }
            v
        })
        .collect();
    Json(json!({ "source": "live", "symbols": symbols }))
}
