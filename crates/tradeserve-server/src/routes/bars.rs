//! `POST /api/v1/bars`: a batch of one-minute bars into the live feature source, for desks
//! without a Kafka feed. Each bar is checked and applied on its own: one bad bar is counted
//! and reported by index, never fails the others. The body has its own size limit
//! (`features.live.post_limit_bytes`), and a batch is parsed and applied on a blocking thread:
//! thousands of bars are milliseconds of CPU that must not hold an async worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tradeserve_features::live::{Bar, Ingested, Rejection};

use axum::extract::Request;
use tradeserve_core::request::parse_json_object;
use tradeserve_features::live::LiveFeatures;

use crate::error::ApiError;
use crate::routes::body::read_body;
use crate::state::AppState;

/// Bars reported one by one in the answer; beyond, only counted.
const REPORTED: usize = 100;

/// `{"bars": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub bars: Vec<Value>,
}

pub async fn post(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let Some(live) = state.live.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_live",
            "bars are taken only with features.source = \"live\"; this service replays its bundled bars",
        ));
    };
    let bytes = read_body(request.into_body(), state.bars_body).await?;
    tokio::task::spawn_blocking(move || {
        let batch: Batch = parse_json_object(&bytes)?;
        Ok(Json(apply(&live, batch)))
    })
    .await
    .map_err(|e| ApiError::internal(format!("bars task failed: {e}")))?
}

/// Apply every bar of `batch`; what each did.
fn apply(live: &LiveFeatures, batch: Batch) -> Value {
    let mut applied: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut errors = Vec::new();
    for (index, value) in batch.bars.into_iter().enumerate() {
        let result = match serde_json::from_value::<Bar>(value) {
            Ok(bar) => live.ingest(&bar),
            Err(_) => live.reject(Rejection::Malformed),
        };
        match result {
            Ok(how) => *applied.entry(name(how)).or_default() += 1,
            Err(reason) => {
                *rejected.entry(reason.as_str()).or_default() += 1;
                if errors.len() < REPORTED {
                    errors.push(json!({"index": index, "reason": reason.as_str()}));
                }
            }
        }
    }
    let count = |k: &str| applied.get(k).copied().unwrap_or(0);
    json!({
        "appended": count("appended"),
        "reordered": count("reordered"),
        "duplicates": count("duplicate"),
        "rejected": rejected,
        "errors": errors,
    })
}

fn name(how: Ingested) -> &'static str {
    match how {
        Ingested::Appended => "appended",
        Ingested::Reordered => "reordered",
        Ingested::Duplicate => "duplicate",
    }
}
