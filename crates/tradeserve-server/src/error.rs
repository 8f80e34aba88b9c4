//! The one place that maps errors to HTTP status codes and stable `code`s, and logs them.
//!
//! Every error body has the shape `{"error": {"code", "message", "field"?}}`. Client errors
//! are logged at debug level; server-side failures (5xx) at warn or error, once, here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tradeserve_core::PredictError;
use tradeserve_core::error::ModelError;
use tradeserve_core::ports::FeatureError;
use tradeserve_core::request::RequestErrorKind;

/// The `error` object of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code.
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
    /// The request field it concerns (`Invalid field` errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An HTTP error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

/// Every error response's body.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
#[serde(deny_unknown_fields)]
pub struct Envelope<'a> {
    pub error: &'a ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code,
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn not_ready(reason: &str) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason)
    }

    pub fn overloaded() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "too many requests in flight; retry shortly",
        )
    }

    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// The client did not send its whole body in time (the connection is closed after it).
    pub fn body_timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("request body not received within {limit:?}"),
        )
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this endpoint",
        )
    }

    /// 422 `invalid_value` naming the field.
    pub fn invalid_value(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                code: "invalid_value",
                message: message.into(),
                field: Some(field.to_owned()),
            },
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }
}

impl From<PredictError> for ApiError {
    fn from(e: PredictError) -> ApiError {
        let message = e.to_string();
        let api = match e {
            PredictError::Request(r) => {
                let status = match r.kind {
                    RequestErrorKind::Malformed => StatusCode::BAD_REQUEST,
                    RequestErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError {
                    status,
                    body: ErrorBody {
                        code: r.code,
                        message: r.message,
                        field: r.field,
                    },
                }
            }
            PredictError::ExplainOverloaded => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "explain_overloaded", message)
            }
            PredictError::Explain(_) => {
                tracing::error!(error = %message, "explanation failed");
                ApiError::internal(message)
            }
            PredictError::Features(f) => features_error(f, message),
            PredictError::Model { role, cause } => model_error(role, cause, message),
            PredictError::Risk(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "risk_unavailable", message)
            }
            PredictError::Unrecorded(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                message,
            ),
            PredictError::DeadlineExceeded { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", message)
            }
            PredictError::IdempotencyConflict => {
                ApiError::new(StatusCode::CONFLICT, "idempotency_conflict", message)
            }
            PredictError::IdempotencyInFlight => {
                ApiError::new(StatusCode::CONFLICT, "idempotency_in_flight", message)
            }
            PredictError::IdempotencyUnavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "idempotency_unavailable",
                message,
            ),
        };
        api.log();
        api
    }
}

/// No features for the request: 404 when there are none to give (unknown symbol, before the
/// data, warming up), 503 when the source cannot give them now (stale, unavailable).
fn features_error(e: FeatureError, message: String) -> ApiError {
    let not_found = |code, message, field: &str| ApiError {
        status: StatusCode::NOT_FOUND,
        body: ErrorBody {
            code,
            message,
            field: Some(field.to_owned()),
        },
    };
    match e {
        FeatureError::UnknownSymbol(s) => not_found(
            "unknown_symbol",
            format!("no features for symbol {s}"),
            "symbol",
        ),
        FeatureError::NoData(m) => not_found("no_features", m, "timestamp"),
        FeatureError::WarmingUp { .. } => not_found("no_features", message, "symbol"),
        FeatureError::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "features_unavailable",
            message,
        ),
        FeatureError::Stale { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stale_features", message)
        }
    }
}

/// A model that gave no output: a remote backend down (503 `backend_unavailable`) or past the
/// deadline (504), or a model that failed (503 `model_failure`).
fn model_error(role: tradeserve_core::Role, source: ModelError, message: String) -> ApiError {
    match source {
        ModelError::Unavailable(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            format!("the backend serving {role} is unavailable: {why}"),
        ),
        ModelError::Deadline => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            format!("the backend serving {role} did not answer within the request deadline"),
        ),
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_failure", message),
    }
}

impl ApiError {
    /// Server errors at warn, refusals at debug. The event sink and the remote backends'
    /// circuit breakers log their own failures once per change; the others at most once per
    /// code every [`WARN_EVERY`], with how many were held back: a store that is down fails
    /// every request alike, and a line per request would flood the log during an outage.
    fn log(&self) {
        let (status, code, error) = (self.status.as_u16(), self.body.code, &self.body.message);
        let logged_elsewhere = matches!(code, "audit_unavailable" | "backend_unavailable");
        if self.status.is_server_error() && !logged_elsewhere {
            if let Some(held_back) = warn_due(code) {
                tracing::warn!(status, code, %error, held_back, "request failed");
            }
        } else {
            tracing::debug!(status, code, %error, "request refused");
        }
    }
}

/// How often a failure with one code is logged at most.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a failure with `code` is due a log line (see [`ApiError::log`]).
fn warn_due(code: &'static str) -> Option<u64> {
    use std::collections::HashMap;
    use tradeserve_core::log_every::LogEvery;
    static BY_CODE: std::sync::OnceLock<parking_lot::Mutex<HashMap<&'static str, LogEvery>>> =
        std::sync::OnceLock::new();
    BY_CODE
        .get_or_init(Default::default)
        .lock()
        .entry(code)
        .or_insert_with(|| LogEvery::new(WARN_EVERY))
        .due()
}

/// A JSON response from already-serialized bytes.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&Envelope { error: &self.body }) {
            Ok(body) => {
                let mut res = json_response(self.status, body);
                // The rest of an unread body is still on the wire: close rather than parse it
                // as the next request.
                if self.status == StatusCode::REQUEST_TIMEOUT {
                    res.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                res
            }
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "error serialization failed",
            )
                .into_response(),
        }
    }
}

impl From<tradeserve_core::request::RequestError> for ApiError {
    fn from(r: tradeserve_core::request::RequestError) -> ApiError {
        ApiError::from(PredictError::Request(r))
    }
}

impl From<crate::control::PlaneError> for ApiError {
    fn from(e: crate::control::PlaneError) -> ApiError {
        use crate::control::PlaneError;
        use crate::control::catalog::CatalogError;
        use tradeserve_core::control::CommandError;
        use tradeserve_core::ports::StoreError;
        let message = e.to_string();
        match e {
            PlaneError::Command(CommandError::Invalid(f)) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: ErrorBody {
                    code: "invalid_value",
                    message,
                    field: Some(f.field.to_owned()),
                },
            },
            PlaneError::Command(CommandError::NotFound { .. }) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            PlaneError::Command(CommandError::Conflict(_)) | PlaneError::Contention => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            PlaneError::Models(CatalogError::Unknown { .. }) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: ErrorBody {
                    code: "unknown_model_version",
                    message,
                    field: None,
                },
            },
            PlaneError::Models(CatalogError::BackendUnavailable(_)) => {
                tracing::warn!(error = %message, "model server unavailable for a control change");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "backend_unavailable",
                    message,
                )
            }
            PlaneError::Models(CatalogError::BackendRefused(_)) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "model_refused", message)
            }
            PlaneError::Models(CatalogError::Unavailable(_)) => {
                tracing::warn!(error = %message, "model registry unavailable for a control change");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "registry_unavailable",
                    message,
                )
            }
            PlaneError::Store(StoreError::Unavailable(_) | StoreError::Corrupt(_)) => {
                tracing::error!(error = %message, "control store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "control_store_unavailable",
                    message,
                )
            }
            PlaneError::NotReady => ApiError::not_ready("models are not loaded"),
            PlaneError::AliasMove(_) => {
                tracing::error!(error = %message, "alias move failed");
                ApiError::new(StatusCode::BAD_GATEWAY, "alias_move_failed", message)
            }
        }
    }
}

impl From<tradeserve_core::control::OutcomeError> for ApiError {
    fn from(e: tradeserve_core::control::OutcomeError) -> ApiError {
        use tradeserve_core::control::OutcomeError;
        let message = e.to_string();
        match e {
            OutcomeError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_decision", message)
            }
            OutcomeError::AlreadyRecorded(_) => {
                ApiError::new(StatusCode::CONFLICT, "outcome_exists", message)
            }
            OutcomeError::Unavailable(..) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unavailable",
                message,
            ),
        }
    }
}
