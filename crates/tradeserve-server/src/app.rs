//! The HTTP router: every route, the JSON 404/405 fallbacks, and the middleware that times
//! each request (from its headers, or from its body for predictions) and counts its status.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};

use crate::auth::{self, Access};
use crate::error::ApiError;
use crate::metrics::Route;
use crate::routes::admit::{self, Arrival};
use crate::routes::{bars, experiments, ops, outcomes, predict, rollouts};
use crate::state::AppState;

/// Build the router over shared state. With API keys configured, each route sits behind
/// [`auth::guard`] with the access it needs; without, no layer is added.
pub fn router(state: Arc<AppState>) -> Router {
    let auth = state.auth.clone();
    let gate = |route: MethodRouter<Arc<AppState>>, access: Access| match &auth {
        Some(a) => route.route_layer(middleware::from_fn_with_state(
            (Arc::clone(a), access),
            auth::guard,
        )),
        None => route,
    };
    let admitted = post(predict::predict).route_layer(middleware::from_fn_with_state(
        Arc::clone(&state),
        admit::admit,
    ));
    Router::new()
        .route("/api/v1/predict", gate(admitted, Access::Trade))
        .route("/api/v1/models", gate(get(ops::models), Access::Read))
        .route(
            "/api/v1/models/reload",
            gate(post(ops::reload), Access::Operate),
        )
        .route("/api/v1/symbols", gate(get(ops::symbols), Access::Read))
        .route("/api/v1/bars", gate(post(bars::post), Access::Operate))
        .route(
            "/api/v1/experiments",
            gate(get(experiments::list), Access::Read)
                .merge(gate(post(experiments::create), Access::Operate)),
        )
        .route(
            "/api/v1/experiments/{id}",
            gate(get(experiments::get), Access::Read).merge(gate(
                put(experiments::update).delete(experiments::stop),
                Access::Operate,
            )),
        )
        .route(
            "/api/v1/experiments/{id}/report",
            gate(get(experiments::report), Access::Read),
        )
        .route(
            "/api/v1/outcomes",
            gate(post(outcomes::post), Access::Trade),
        )
        .route(
            "/api/v1/rollouts",
            gate(get(rollouts::list), Access::Read)
                .merge(gate(post(rollouts::create), Access::Operate)),
        )
        .route(
            "/api/v1/rollouts/{id}",
            gate(get(rollouts::get), Access::Read),
        )
        .route(
            "/api/v1/rollouts/{id}/promote",
            gate(post(rollouts::promote), Access::Operate),
        )
        .route(
            "/api/v1/rollouts/{id}/pause",
            gate(post(rollouts::pause), Access::Operate),
        )
        .route(
            "/api/v1/rollouts/{id}/rollback",
            gate(post(rollouts::rollback), Access::Operate),
        )
        .route(
            "/api/v1/rollback",
            gate(post(rollouts::kill_switch), Access::Operate),
        )
        .route("/health/live", get(ops::live))
        .route("/health/ready", gate(get(ops::ready), Access::Ops))
        .route("/metrics", gate(get(ops::metrics), Access::Ops))
        .route("/openapi.json", gate(get(ops::openapi), Access::Read))
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
