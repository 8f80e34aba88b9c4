//! What the experiment and rollout handlers share: reading a change request (its body and
//! who sent it) and answering with the record the change produced.

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{Actor, Command, ControlState};
use crate::error::ApiError;
use crate::routes::body;
use crate::state::AppState;

/// The JSON body of a create or update, with the `X-Actor` who sent it.
pub async fn spec<T: DeserializeOwned>(
    request: Request,
    limit: body::BodyLimits,
) -> Result<(String, T), ApiError> {
    let who = body::who(request.headers());
    let spec = body::json(request.into_body(), limit).await?;
    Ok((who, spec))
}

/// Who and why of an action (`promote`, stop, kill switch…): `X-Actor` and the optional body.
pub async fn actor(
    request: Request,
    limit: body::BodyLimits,
    default_reason: &str,
) -> Result<Actor, ApiError> {
    let (parts, b) = request.into_parts();
    body::actor(&parts.headers, b, limit, default_reason).await
}

/// Apply `command`; answer `status` with what `pick` shows of the new state.
pub async fn apply<T: Serialize>(
    state: &AppState,
    command: Command,
    actor: &Actor,
    status: StatusCode,
    pick: impl FnOnce(&ControlState) -> Option<T>,
) -> Response {
    match state.control.execute(command, actor).await {
        Ok(view) => match pick(&view) {
            Some(v) => (status, Json(v)).into_response(),
            None => ApiError::internal("record missing after the change").into_response(),
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}
