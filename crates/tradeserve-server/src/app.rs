//! The HTTP router: every route, the JSON 404/405 fallbacks, and the middleware that times
//! each request (from its headers, or from its body for predictions) and counts its status.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::metrics::Route;
use crate::routes::admit::{self, Arrival};
use crate::routes::{bars, experiments, ops, outcomes, predict, rollouts};
use crate::state::AppState;

/// Build the router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/api/v1/predict",
            post(predict::predict).route_layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                admit::admit,
            )),
        )
        .route("/api/v1/models", get(ops::models))
        .route("/api/v1/models/reload", post(ops::reload))
        .route("/api/v1/symbols", get(ops::symbols))
        .route("/api/v1/bars", post(bars::post))
        .route(
            "/api/v1/experiments",
            get(experiments::list).post(experiments::create),
        )
        .route(
            "/api/v1/experiments/{id}",
            get(experiments::get)
                .put(experiments::update)
                .delete(experiments::stop),
        )
        .route("/api/v1/experiments/{id}/report", get(experiments::report))
        .route("/api/v1/outcomes", post(outcomes::post))
        .route(
            "/api/v1/rollouts",
            get(rollouts::list).post(rollouts::create),
        )
        .route("/api/v1/rollouts/{id}", get(rollouts::get))
        .route("/api/v1/rollouts/{id}/promote", post(rollouts::promote))
        .route("/api/v1/rollouts/{id}/pause", post(rollouts::pause))
        .route("/api/v1/rollouts/{id}/rollback", post(rollouts::rollback))
        .route("/api/v1/rollback", post(rollouts::kill_switch))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(|| async { ApiError::not_found().into_response() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let headers_in = Instant::now();
    let route = if request.uri().path() == "/api/v1/predict" {
        Route::Predict
    } else {
        Route::Other
    };
    let response = next.run(request).await;
    let from = response
        .extensions()
        .get::<Arrival>()
        .map_or(headers_in, |a| a.instant);
    state.metrics.observe_response(
        route,
        response.status().as_u16(),
        from.elapsed().as_secs_f64(),
    );
    response
}
