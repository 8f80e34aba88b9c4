//! The active model set (`GET /api/v1/models`), reloading it from MLflow
//! (`POST /api/v1/models/reload`), and the symbols the feature source serves
//! (`GET /api/v1/symbols`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;
use tradeserve_core::model_set::BackendInfo;
use tradeserve_core::ports::FeatureSource;
use tradeserve_core::snapshot::SymbolCoverage;
use tradeserve_core::types::Role;
use tradeserve_core::{LoadedModel, ModelInfo};
use tradeserve_features::live::SymbolStatus;
use utoipa::ToSchema;

use crate::error::{ApiError, Envelope};
use crate::openapi::responses::{Guarded, OperatorOnly};
use crate::registry::{RegistryStatus, ReloadError, ReloadOutcome};
use crate::routes::ops::RemoteHealth;
use crate::state::AppState;

/// `GET /api/v1/models`.
#[derive(Serialize, ToSchema)]
pub struct Models<'a> {
    /// Where the models come from: `bundled` or `mlflow`.
    #[schema(value_type = String)]
    source: &'static str,
    /// MLflow's tracking URI (mlflow source).
    #[serde(skip_serializing_if = "Option::is_none")]
    tracking_uri: Option<&'a str>,
    /// Whether the registry answers (mlflow source).
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<RegistryStatus>,
    /// Role → version of the set kept loaded for rollback (mlflow source; null before the
    /// first swap).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(clippy::option_option)] // absent (bundled) and null (nothing kept) differ
    previous: Option<Option<BTreeMap<Role, String>>>,
    models: BTreeMap<Role, Served<'a>>,
}

/// A role as `GET /api/v1/models` shows it: what was loaded and what serves it.
#[derive(Serialize, ToSchema)]
#[schema(as = ServedModel)]
pub struct Served<'a> {
    #[serde(flatten)]
    info: &'a ModelInfo,
    backend: BackendView,
}

/// What serves the role on the request path: this process, or a remote model server (the
/// in-process copy of the same version stays loaded for explanations, shadow runs and replay).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BackendView {
    /// This process.
    InProcess {
        #[schema(value_type = String, pattern = "^in_process$")]
        kind: &'static str,
    },
    /// A remote model server (`kind`: `kserve_v2`, `tfserving` or `torchserve`), its circuit
    /// and what it said of the version.
    Remote {
        #[serde(flatten)]
        backend: BackendInfo,
        #[serde(flatten)]
        health: RemoteHealth,
    },
}

impl<'a> Served<'a> {
    fn of(m: &'a LoadedModel, state: &AppState) -> Served<'a> {
        let backend = match &m.remote {
            Some(r) => BackendView::Remote {
                backend: r.backend().clone(),
                health: RemoteHealth::of(r.as_ref(), state),
            },
            None => BackendView::InProcess { kind: "in_process" },
        };
        Served {
            info: &m.info,
            backend,
        }
    }
}

/// Active model set
///
/// Each role's registry name, version, source, sha256 and load time, and what serves it.
#[utoipa::path(get, path = "/api/v1/models", tag = "models",
    responses(
        (status = 200, description = "Each role's registry name, version, source, sha256 and load time", body = Models),
        Guarded,
        (status = 503, description = "not_ready (models not loaded)", body = Envelope),
    ))]
pub async fn models(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let set = state
        .control
        .champion()
        .ok_or_else(|| ApiError::not_ready("models are not loaded"))?;
    let models = set
        .models()
        .iter()
        .map(|m| (m.info.role, Served::of(m, &state)))
        .collect();
    let registry = state.registry.as_deref();
    Ok(Json(Models {
        source: if registry.is_some() {
            "mlflow"
        } else {
            "bundled"
        },
        tracking_uri: registry.map(|r| r.tracking_uri()),
        registry: registry.map(|r| r.status()),
        previous: registry.map(|r| {
            r.previous
                .load()
                .as_ref()
                .map(|p| p.versions().as_ref().clone())
        }),
        models,
    })
    .into_response())
}

/// `POST /api/v1/models/reload`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Reloaded {
    /// With models from MLflow: unchanged (the versions serving), or swapped (before and
    /// after).
    Registry(ReloadOutcome),
    /// With bundled models: there is no registry to reload from, so nothing changes.
    Bundled {
        #[schema(value_type = String, pattern = "^unchanged$")]
        status: &'static str,
        #[schema(value_type = String, pattern = "^bundled$")]
        source: &'static str,
    },
}

/// Re-resolve the MLflow aliases now (also done by polling)
///
/// With models from MLflow: resolves every role's alias; if any moved, downloads, verifies
/// (digest, signature, golden vectors) and swaps the whole set atomically. A failure leaves
/// the current set serving.
#[utoipa::path(post, path = "/api/v1/models/reload", tag = "models",
    responses(
        (status = 200, description = "unchanged, or swapped (with the versions before and after)", body = Reloaded),
        Guarded,
        OperatorOnly,
        (status = 502, description = "model_refused: the new version failed verification (digest, signature, golden vectors) or an alias is missing; the current set keeps serving", body = Envelope),
        (status = 503, description = "registry_unavailable: MLflow could not be reached; the current set keeps serving", body = Envelope),
    ))]
pub async fn reload(State(state): State<Arc<AppState>>) -> Result<Json<Reloaded>, ApiError> {
    let Some(manager) = state.registry.clone() else {
        return Ok(Json(Reloaded::Bundled {
            status: "unchanged",
            source: "bundled",
        }));
    };
    let outcome = manager.reload(state.as_ref()).await.map_err(|e| match e {
        ReloadError::Unavailable(m) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", m)
        }
        ReloadError::Refused(m) => ApiError::new(StatusCode::BAD_GATEWAY, "model_refused", m),
    })?;
    Ok(Json(Reloaded::Registry(outcome)))
}

/// `GET /api/v1/symbols`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Symbols<'a> {
    /// The replay: each symbol with the time range of its data.
    Replay { symbols: &'a [SymbolCoverage] },
    /// The live feed: each symbol's newest bar, its age, bars held and status, with the
    /// range of its retained history.
    Live { symbols: Vec<LiveSymbol> },
}

/// A symbol of the live feed.
#[derive(Serialize, ToSchema)]
pub struct LiveSymbol {
    #[serde(flatten)]
    status: SymbolStatus,
    /// First instant with features (once a bar is held).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    from: Option<OffsetDateTime>,
    /// The newest bar (once a bar is held).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    to: Option<OffsetDateTime>,
}

/// Symbols the feature source serves
#[utoipa::path(get, path = "/api/v1/symbols", tag = "models",
    responses(
        (status = 200, description = "The replay: each symbol with the time range of its data. The live feed: each symbol's newest bar, its age, bars held and status", body = Symbols),
        Guarded,
    ))]
pub async fn symbols(State(state): State<Arc<AppState>>) -> Response {
    let Some(live) = &state.live else {
        return Json(Symbols::Replay {
            symbols: &state.symbols,
        })
        .into_response();
    };
    let coverage: BTreeMap<String, SymbolCoverage> = live
        .coverage()
        .into_iter()
        .map(|c| (c.symbol.clone(), c))
        .collect();
    let symbols = live
        .status()
        .into_iter()
        .map(|status| {
            let held = coverage.get(&status.symbol);
            LiveSymbol {
                from: held.map(|c| c.from),
                to: held.map(|c| c.to),
                status,
            }
        })
        .collect();
    Json(Symbols::Live { symbols }).into_response()
}
