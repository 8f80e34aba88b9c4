//! What the experiment and rollout handlers share: applying a control change and answering
//! with the record it produced.

use axum::Json;
use axum::http::StatusCode;
use serde::Serialize;

use crate::control::{Actor, Command, ControlState};
use crate::error::ApiError;
use crate::state::AppState;

/// Apply `command`; answer `status` with what `pick` shows of the new state.
pub async fn apply<T: Serialize>(
    state: &AppState,
    command: Command,
    actor: &Actor,
    status: StatusCode,
    pick: impl FnOnce(&ControlState) -> Option<T>,
) -> Result<(StatusCode, Json<T>), ApiError> {
    let view = state.control.execute(command, actor).await?;
    let record =
        pick(&view).ok_or_else(|| ApiError::internal("record missing after the change"))?;
    Ok((status, Json(record)))
}
