//! `POST /api/v1/bars`: a batch of one-minute bars into the live feature source, for desks
//! without a Kafka feed. Each bar is checked and applied on its own: one bad bar is counted
//! and reported by index, never fails the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tradeserve_features::live::{Bar, Ingested, Rejection};

use crate::error::ApiError;
use crate::routes::body::JsonBody;
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
    JsonBody(batch): JsonBody<Batch>,
) -> Result<Json<Value>, ApiError> {
    let Some(live) = state.live.as_ref() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_live",
            "bars are taken only with features.source = \"live\"; this service replays its bundled bars",
        ));
    };
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
    Ok(Json(json!({
        "appended": count("appended"),
        "reordered": count("reordered"),
        "duplicates": count("duplicate"),
        "rejected": rejected,
        "errors": errors,
    })))
}

fn name(how: Ingested) -> &'static str {
    match how {
        Ingested::Appended => "appended",
        Ingested::Reordered => "reordered",
        Ingested::Duplicate => "duplicate",
    }
}
