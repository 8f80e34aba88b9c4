//! Reading requests: bodies (the size and time limits, and strict JSON parsing with the
//! statuses the API guide (docs/api.md) lists: 400 not JSON / not an object, 408 too slow,
//! 413 too large, 422 a bad field), path ids in the error shape, and who is asking and why,
//! for the audit trail of control changes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tradeserve_core::request::parse_json_object;

use crate::control::Actor;
use crate::error::ApiError;
use crate::state::{AppState, BodyLimits};
use tradeserve_auth::Caller;

/// The body, up to `limits.bytes` bytes, sent within `limits.timeout` (else 408: a client that
/// is slow to send is never charged to the decision deadline, and never holds a permit).
pub async fn read_body(body: Body, limits: BodyLimits) -> Result<Bytes, ApiError> {
    let read = Limited::new(body, limits.bytes).collect();
    let Ok(result) = tokio::time::timeout(limits.timeout, read).await else {
        return Err(ApiError::body_timeout(limits.timeout));
    };
    match result {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::body_too_large(limits.bytes))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("cannot read request body: {e}"),
        )),
    }
}

/// A JSON object body parsed into `T`, within the service's size and time limits, with the
/// status table's errors (400 not JSON or not an object, 408 too slow, 413 too large, 422 a bad
/// field).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let bytes = read_body(request.into_body(), state.body).await?;
        Ok(JsonBody(parse_json_object(&bytes)?))
    }
}

/// The optional body of an action (`promote`, `pause`, `rollback`, stop, kill switch, a
/// release): why (recorded on the audit trail). An empty body is accepted.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = Reason)]
#[serde(deny_unknown_fields)]
pub struct Why {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Who asked (see [`who`]) and, from an optional JSON body
/// `{"reason": …}`, why: the actor of a control change.
pub struct Requested {
    pub who: String,
    pub reason: Option<String>,
}

impl Requested {
    /// The actor, with `default` as the reason when none was given.
    pub fn actor(self, default: &str) -> Actor {
        Actor {
            who: self.who,
            reason: self.reason.unwrap_or_else(|| default.to_owned()),
        }
    }
}

impl FromRequest<Arc<AppState>> for Requested {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let who = who(request.headers(), request.extensions());
        let bytes = read_body(request.into_body(), state.body).await?;
        let why: Why = if bytes.iter().all(u8::is_ascii_whitespace) {
            Why::default()
        } else {
            parse_json_object(&bytes)?
        };
        Ok(Requested {
            who,
            reason: why.reason,
        })
    }
}

/// Who made a request (see [`who`]).
pub struct Who(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Who, Self::Rejection> {
        Ok(Who(who(&parts.headers, &parts.extensions)))
    }
}

/// Who made a request: the id of its API key when authentication is on (an `X-Actor` header
/// is then ignored: a key cannot act as someone else); without keys the `X-Actor` header,
/// cleaned for logs (printable ASCII, at most 64 characters), `api` when absent.
pub fn who(headers: &HeaderMap, extensions: &Extensions) -> String {
    let actor = headers.get("x-actor").and_then(|v| v.to_str().ok());
    who_of(extensions.get::<Caller>(), actor)
}

/// [`who`] of a caller (authenticated) or an `X-Actor` (any protocol's).
pub fn who_of(caller: Option<&Caller>, actor: Option<&str>) -> String {
    if let Some(caller) = caller {
        return caller.id.to_string();
    }
    let raw = actor.unwrap_or("api");
    let clean: String = raw
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect();
    if clean.trim().is_empty() {
        "api".into()
    } else {
        clean
    }
}

/// The `{id}` of a path, as a string; a segment that is not UTF-8 after percent-decoding is a
/// 400 in the error shape (axum's own rejection is plain text).
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Id, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(Id(id)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                format!("invalid path: {}", e.body_text()),
            )),
        }
    }
}
