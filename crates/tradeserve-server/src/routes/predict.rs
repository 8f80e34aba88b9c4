//! `POST /api/v1/predict`: the pipeline and the answer, behind the admission layer
//! ([`crate::routes::admit`]), which has read the body and started the decision's clock.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use tracing::Instrument as _;
use tradeserve_core::error::ModelError;
use tradeserve_core::idempotency::Stored;
use tradeserve_core::pipeline::{Answered, Failed, PredictError, Prediction, Requester};
use tradeserve_core::request::{KEY_RULE, valid_key};
use tradeserve_core::risk::CheckStatus;
use tradeserve_core::{Decision, Outcome};

use crate::error::{ApiError, Envelope, ErrorBody, json_response};
use crate::routes::admit::Arrival;
use crate::state::AppState;
use tradeserve_auth::Caller;

/// The id of the decision a response carries (for the access log).
#[derive(Debug, Clone, Copy)]
pub struct DecisionId(pub uuid::Uuid);

/// A 403 body: the full decision plus the error.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RejectedDecision)]
pub struct Rejected<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    error: ErrorBody,
}

/// A 403 of `POST /api/v1/predict`: a decision the risk checks refused (this handler), or a
/// key without the trader role (the auth layer, in the error shape).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the union of two bodies built elsewhere, for the document
pub enum Refused<'a> {
    Rejected(Rejected<'a>),
    Forbidden(Envelope<'a>),
}

/// Decide for one symbol
///
/// Runs the regime detector, the meta-controller and the specialists, blends, sizes and
/// risk-checks. The request body is read regardless of Content-Type.
#[utoipa::path(
    post,
    path = "/api/v1/predict",
    tag = "decisions",
    params(
        ("X-Client-Id" = Option<String>, Header, max_length = 128,
         description = "Caller id: the unit of 'client' bucketing and the event's client_id; longer than 128 bytes or not text: 422."),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
         description = "The same as the body's client_order_id (which it must equal when both are sent); not following the pattern: 422."),
    ),
    request_body = tradeserve_core::request::RawRequest,
    responses(
        (status = 200, description = "A decision (approved, or risk_check false)", body = Decision,
         headers(("Idempotent-Replayed" = String, description = "true when the body is the decision first answered for this idempotency key (\"repeat\": true)"))),
        (status = 400, description = "Body is not JSON or not an object (malformed_json, not_an_object, unreadable_body)", body = Envelope),
        (status = 401, description = "unauthorized: no API key, or not one of the configured keys (only when authentication is on; with `WWW-Authenticate: Bearer`)", body = Envelope),
        (status = 403, description = "risk_rejected: the full decision plus an error; or forbidden: the API key lacks the trader role",
         body = Refused,
         headers(("Idempotent-Replayed" = String, description = "true when the body is the decision first answered for this idempotency key (\"repeat\": true)"))),
        (status = 404, description = "unknown_symbol, or no_features as of the timestamp", body = Envelope),
        (status = 408, description = "body_timeout: the body was not received within server.body_read_timeout (the connection is closed)", body = Envelope),
        (status = 409, description = "idempotency_conflict: the idempotency key was used for a different request; idempotency_in_flight: the first request with this key is still being decided (retry)", body = Envelope),
        (status = 413, description = "body_too_large (default limit 16 KiB)", body = Envelope),
        (status = 422, description = "Invalid field: unknown_field, missing_field, duplicate_field, invalid_type, invalid_value, invalid_symbol, invalid_timestamp, timestamp_in_future; a wrong JSON type for any field (e.g. \"strategy_override\": 1) is invalid_type with field set", body = Envelope),
        (status = 429, description = "overloaded (admission control); or rate_limited: the API key is over its quota (Retry-After)", body = Envelope,
         headers(("Retry-After" = u32, description = "rate_limited: whole seconds until the key's quota lets a request through"))),
        (status = 503, description = "not_ready (models not loaded), audit_unavailable (the decision could not be recorded, so it is not answered), too_many_connections (at server.max_connections), features_unavailable, stale_features (live features: the symbol's newest bar is older than features.live.max_bar_age; the message gives the age), model_failure, backend_unavailable (a remote model server, named in the message, refused or failed the call), risk_unavailable, idempotency_unavailable (a request with an idempotency key while its store, Redis, cannot be reached: never decided without the check)", body = Envelope),
        (status = 504, description = "deadline_exceeded (default 40 ms, counted from the moment the body was read; also when a remote model server is still working at the deadline)", body = Envelope),
    )
)]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    Extension(arrival): Extension<Arrival>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = client_id(headers.get("x-client-id").map(|v| v.to_str().ok()))?;
    let idempotency_key = idempotency_key(headers.get("idempotency-key").map(|v| v.to_str().ok()))?;
    let routing = state
        .control
        .routing()
        .ok_or_else(|| ApiError::not_ready("models are not loaded"))?;
    // The decision's trace span (debug: only built when traces are exported); the pipeline
    // records the id in it and opens one child per stage.
    let span = tracing::debug_span!("decision", decision_id = tracing::field::Empty);
    let result = state
        .pipeline
        .decide(
            &routing,
            &body,
            arrival.instant,
            arrival.wall,
            Requester {
                client,
                actor: caller.as_ref().map(|c| &*c.0.id),
                idempotency_key,
                desk_limits: caller.as_ref().map(|c| c.0.limits).unwrap_or_default(),
                deadline: None,
            },
        )
        .instrument(span)
        .await;
    match result {
        Ok(Answered::Repeat(stored)) => repeat(&state, &stored),
        Ok(Answered::Fresh(prediction)) => {
            settle(&state, &prediction);
            answer(&state, &prediction)
        }
        Err(failed) => Err(failure(&state, failed)),
    }
}

/// What a fresh decision leaves behind, whichever protocol answers it: the decision metrics,
/// the fallbacks counted, and the repeated-execution latch.
pub fn settle(state: &Arc<AppState>, prediction: &Prediction) {
    let decision = prediction.outcome.decision();
    latch_if_tripped(state, decision);
    let approved = matches!(prediction.outcome, Outcome::Approved(_));
    state
        .metrics
        .observe_decision(decision.action, approved, &prediction.timings);
    if prediction.unrecorded.is_some() {
        state.metrics.decisions_unrecorded.inc();
    }
    for role in prediction.fell_back.iter() {
        state.metrics.backends.fell_back(role);
    }
}

/// A decision that failed: its remote backend counted, and the error to answer.
pub fn failure(state: &AppState, failed: Failed) -> ApiError {
    if let PredictError::Model { role, cause } = &failed.error {
        match cause {
            ModelError::Unavailable(_) => state.metrics.backends.failed(*role, "unavailable"),
            ModelError::Deadline => state.metrics.backends.failed(*role, "deadline"),
            _ => {}
        }
    }
    ApiError::from(failed.error)
}

/// A decision that failed `repeated_execution` halts its symbol ([`crate::routes::halts::latch`]).
fn latch_if_tripped(state: &Arc<AppState>, decision: &Decision) {
    let Some(v) = &decision.risk_validation else {
        return;
    };
    if v.checks.repeated_execution == CheckStatus::Fail {
        let why = v
            .warnings
            .iter()
            .find(|w| w.starts_with("repeated_execution"))
            .map_or("", String::as_str);
        crate::routes::halts::latch(state, decision.symbol.as_str(), why);
    }
}

/// `Idempotency-Key` (absent; present, as text or `None` when it is not): absent is none;
/// present, it must follow the key rule (422 otherwise).
pub fn idempotency_key(raw: Option<Option<&str>>) -> Result<Option<&str>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw {
        Some(key) if valid_key(key) => Ok(Some(key)),
        _ => Err(ApiError::invalid_value(
            "Idempotency-Key",
            format!("Idempotency-Key {KEY_RULE}"),
        )),
    }
}

/// The decision kept under the request's idempotency key, as first answered, marked
/// `"repeat": true` (and the `Idempotent-Replayed: true` header): nothing booked or recorded.
fn repeat(state: &AppState, stored: &Stored) -> Result<Response, ApiError> {
    let mut decision: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&stored.decision)
            .map_err(|e| ApiError::internal(format!("stored decision unreadable: {e}")))?;
    decision.insert("repeat".into(), serde_json::Value::Bool(true));
    let status = if stored.approved {
        StatusCode::OK
    } else {
        let error = ErrorBody {
            code: "risk_rejected",
            message: "the decision failed one or more risk checks".into(),
            field: None,
        };
        let error = serde_json::to_value(error)
            .map_err(|e| ApiError::internal(format!("cannot serialize error: {e}")))?;
        decision.insert("error".into(), error);
        StatusCode::FORBIDDEN
    };
    state.metrics.decisions_repeated.inc();
    let body = serde_json::to_vec(&decision)
        .map_err(|e| ApiError::internal(format!("cannot serialize decision: {e}")))?;
    let mut response = json_response(status, body);
    response.headers_mut().insert(
        "idempotent-replayed",
        axum::http::HeaderValue::from_static("true"),
    );
    Ok(response)
}

/// `X-Client-Id`: absent or empty is no client; longer than 128 bytes or not text is refused
/// (bucketing silently without it would put the caller in the wrong arm).
pub fn client_id(raw: Option<Option<&str>>) -> Result<Option<&str>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let id = raw.filter(|v| v.len() <= 128).ok_or_else(|| {
        ApiError::invalid_value(
            "X-Client-Id",
            "X-Client-Id must be text of at most 128 bytes",
        )
    })?;
    Ok(Some(id).filter(|v| !v.is_empty()))
}

/// The response for a fresh decision (the pipeline has credited it to its arms).
fn answer(state: &AppState, prediction: &Prediction) -> Result<Response, ApiError> {
    let decision = prediction.outcome.decision();
    let serialized = match &prediction.outcome {
        Outcome::Approved(d) => serde_json::to_vec(d).map(|b| (StatusCode::OK, b)),
        Outcome::Rejected(d) => {
            let error = ErrorBody {
                code: "risk_rejected",
                message: "the decision failed one or more risk checks".into(),
                field: None,
            };
            serde_json::to_vec(&Rejected { decision: d, error }).map(|b| (StatusCode::FORBIDDEN, b))
        }
    };
    let (status, body) =
        serialized.map_err(|e| ApiError::internal(format!("cannot serialize decision: {e}")))?;
    let mut response = json_response(status, body);
    // Marked only where the access log may look (by default a 403 here, so that it reads as
    // a decision, not a failure): the mark allocates the response's extension map, which an
    // ordinary 200 need not pay for.
    if state.access_log.wants(status.as_u16(), false) {
        response
            .extensions_mut()
            .insert(DecisionId(decision.decision_id));
    }
    Ok(response)
}
