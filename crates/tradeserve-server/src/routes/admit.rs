//! Admission of predictions, as a layer in front of the handler: read the body (bounded in
//! size and time: 413, 408), stamp the arrival (where the decision deadline and `latency_ms`
//! start), take an admission permit (429 at once when none is left), and count the request in
//! flight until its answer is ready. A client that is slow to send therefore never holds a
//! permit and is never charged to the deadline.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::routes::body::read_body;
use crate::state::AppState;

/// When a request's body had been read, by the monotonic and the wall clock: where the
/// decision deadline and `latency_ms` start.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub instant: Instant,
    pub wall: OffsetDateTime,
}

impl Arrival {
    pub fn now() -> Arrival {
        Arrival {
            instant: Instant::now(),
            wall: OffsetDateTime::now_utc(),
        }
    }

    /// Mark `response` so the latency histogram measures from this instant, not from the
    /// headers (a client slow to upload is not server latency).
    pub fn stamp(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a AppState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

/// A decision admitted (REST or gRPC): its admission permit, and its count in the in-flight
/// gauge, both released however it ends.
pub struct Admitted<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    _in_flight: InFlight<'a>,
}

impl Admitted<'_> {
    /// A permit now, or `None` (answer 429 `overloaded`).
    pub fn try_new(state: &AppState) -> Option<Admitted<'_>> {
        let permit = state.admission.try_acquire().ok()?;
        state.metrics.in_flight.inc();
        Some(Admitted {
            _permit: permit,
            _in_flight: InFlight(state),
        })
    }
}

pub async fn admit(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body.bytes) {
        return Err(ApiError::body_too_large(state.body.bytes));
    }
    let bytes = read_body(body, state.body).await?;
    let arrival = Arrival::now();
    let Some(_admitted) = Admitted::try_new(&state) else {
        return Ok(arrival.stamp(ApiError::overloaded().into_response()));
    };
    parts.extensions.insert(arrival);
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    Ok(arrival.stamp(response))
}
