//! The REST API's errors as gRPC statuses: the one mapping from an HTTP status to a gRPC
//! code, with the error's stable code in a `google.rpc.ErrorInfo` (reason = the REST `code`,
//! domain `tradeserve`, metadata `field` when it concerns one field) and, for a rate-limited
//! key, a `google.rpc.RetryInfo`. Clients that read only the code and message still get the
//! REST message.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};
use tradeserve_auth::Refused;

use crate::error::ApiError;

/// The `ErrorInfo` domain of every TradeServe error.
pub const DOMAIN: &str = "tradeserve";

/// The gRPC code for a REST status (409: `idempotency_in_flight` is worth retrying, ABORTED;
/// a conflicting key is ALREADY_EXISTS).
pub fn code_for(status: StatusCode, code: &str) -> Code {
    match status.as_u16() {
        400 | 413 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 if code == "idempotency_in_flight" => Code::Aborted,
        409 => Code::AlreadyExists,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// The HTTP status a gRPC code stands for in the shared response metrics.
pub use tradeserve_grpc::rest_status as http_status_of;

/// A REST error as a gRPC status.
pub fn from_api(error: &ApiError) -> Status {
    with_info(
        code_for(error.status, error.body.code),
        error.body.code,
        &error.body.message,
        error.body.field.as_deref(),
        None,
    )
}

/// An authentication refusal as a gRPC status (the REST layer's 401, 403 and 429).
pub fn from_refusal(refused: &Refused) -> Status {
    let (code, reason, retry) = match refused {
        Refused::Missing | Refused::Unknown => (Code::Unauthenticated, "unauthorized", None),
        Refused::Forbidden { .. } => (Code::PermissionDenied, "forbidden", None),
        Refused::Limited { retry_after, .. } => {
            (Code::ResourceExhausted, "rate_limited", Some(*retry_after))
        }
    };
    with_info(code, reason, &refused.to_string(), None, retry)
}

/// A status with its `ErrorInfo` (and `RetryInfo`).
pub fn with_info(
    code: Code,
    reason: &str,
    message: &str,
    field: Option<&str>,
    retry_after: Option<Duration>,
) -> Status {
    let metadata: HashMap<String, String> = field
        .map(|f| ("field".to_owned(), f.to_owned()))
        .into_iter()
        .collect();
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    if let Some(after) = retry_after {
        details.set_retry_info(Some(after));
    }
    Status::with_error_details(code, message, details)
}

/// An invalid argument of a gRPC-only shape (an OIP tensor, a missing message).
pub fn invalid(field: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    with_info(
        Code::InvalidArgument,
        "invalid_value",
        &message,
        Some(field),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rest_status_maps_and_maps_back() {
        for (status, code, back) in [
            (400, "malformed_json", 422),
            (401, "unauthorized", 401),
            (403, "forbidden", 403),
            (404, "unknown_symbol", 404),
            (409, "idempotency_conflict", 409),
            (409, "idempotency_in_flight", 409),
            (422, "invalid_value", 422),
            (429, "overloaded", 429),
            (503, "model_failure", 503),
            (504, "deadline_exceeded", 504),
            (500, "internal", 500),
        ] {
            let Ok(s) = StatusCode::from_u16(status) else {
                continue;
            };
            assert_eq!(http_status_of(code_for(s, code)), back, "{status} {code}");
        }
        assert_eq!(
            code_for(StatusCode::CONFLICT, "idempotency_in_flight"),
            Code::Aborted
        );
        assert_eq!(
            code_for(StatusCode::CONFLICT, "idempotency_conflict"),
            Code::AlreadyExists
        );
    }

    #[test]
    fn the_rest_code_and_field_travel_in_error_info() {
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_symbol", "bad");
        error.body.field = Some("symbol".into());
        let status = from_api(&error);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "bad");
        let details = status.get_error_details();
        let info = details.error_info().cloned();
        let Some(info) = info else {
            panic!("no ErrorInfo in {status:?}");
        };
        assert_eq!(info.reason, "invalid_symbol");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(
            info.metadata.get("field").map(String::as_str),
            Some("symbol")
        );
    }
}
