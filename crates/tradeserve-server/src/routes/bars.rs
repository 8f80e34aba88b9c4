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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tradeserve_features::live::{Bar, Ingested, Rejection};
use utoipa::ToSchema;

use axum::extract::Request;
use tradeserve_core::request::parse_json_object;
use tradeserve_features::live::LiveFeatures;

use crate::error::{ApiError, Envelope};
use crate::openapi::responses::{Guarded, OperatorOnly};
use crate::routes::body::read_body;
use crate::state::AppState;

/// Bars reported one by one in the answer; beyond, only counted.
const REPORTED: usize = 100;

/// `{"bars": [...]}`: each element is read as a bar on its own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    #[schema(value_type = Vec<Bar>)]
    pub bars: Vec<Value>,
}

/// What each bar of a batch did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Applied {
    appended: u64,
    reordered: u64,
    duplicates: u64,
    /// Count by reason: malformed, invalid_symbol, unknown_symbol, not_finite,
    /// non_positive_price, high_below_low, outside_range, negative_volume, late, future.
    #[schema(value_type = BTreeMap<String, u64>)]
    rejected: BTreeMap<&'static str, u64>,
    /// The first 100 rejected bars, by index.
    errors: Vec<BarError>,
}

/// A rejected bar.
#[derive(Debug, Serialize, ToSchema)]
pub struct BarError {
    index: usize,
    #[schema(value_type = String)]
    reason: &'static str,
}

/// Feed one-minute bars to the live feature source
///
/// For desks without a Kafka feed (`features.source = "live"`). Each bar is checked and
/// applied on its own, in order: appended, put in order when late within
/// `features.live.reorder_window`, a duplicate (same symbol and end: nothing changes), or
/// rejected with a reason — counted in `tradeserve_bars_total`, the first 100 listed by
/// index. One bad bar never fails the others.
#[utoipa::path(post, path = "/api/v1/bars", tag = "live data",
    request_body = Batch,
    responses(
        (status = 200, description = "What each bar did", body = Applied),
        (status = 400, description = "malformed body", body = Envelope),
        Guarded, OperatorOnly,
        (status = 409, description = "not_live: features.source is replay", body = Envelope),
        (status = 413, description = "body too large", body = Envelope),
        (status = 422, description = "The body is not {\"bars\": [...]} (error.field names what is wrong); a bad bar inside the array is not an error, it is counted", body = Envelope),
    ))]
pub async fn post(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<Applied>, ApiError> {
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
fn apply(live: &LiveFeatures, batch: Batch) -> Applied {
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
                    errors.push(BarError {
                        index,
                        reason: reason.as_str(),
                    });
                }
            }
        }
    }
    let count = |k: &str| applied.get(k).copied().unwrap_or(0);
    Applied {
        appended: count("appended"),
        reordered: count("reordered"),
        duplicates: count("duplicate"),
        rejected,
        errors,
    }
}

fn name(how: Ingested) -> &'static str {
    match how {
        Ingested::Appended => "appended",
        Ingested::Reordered => "reordered",
        Ingested::Duplicate => "duplicate",
    }
}
