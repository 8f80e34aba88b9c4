//! The HTTP router: every route, the JSON 404/405 fallbacks, and the middleware that times
//! each request (from its headers, or from its body for predictions), counts its status and
//! writes its access-log line.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};

use crate::auth;
use crate::error::ApiError;
use crate::metrics::{Protocol, Route};
use crate::routes::admit::{self, Arrival};
use crate::routes::predict::DecisionId;
use crate::routes::{bars, experiments, halts, models, ops, outcomes, predict, rollouts, stats};
use crate::state::AppState;
use crate::telemetry::AccessLog;
use tradeserve_auth::Access;

/// Build the router over shared state. With API keys configured, each route sits behind
/// [`auth::guard`] with the access it needs; without, no layer is added.
pub fn router(state: Arc<AppState>) -> Router {
    let gate = Gate(state.auth.clone());
    let admitted = post(predict::predict).route_layer(middleware::from_fn_with_state(
        Arc::clone(&state),
        admit::admit,
    ));
    let trading = Router::new()
        .route("/api/v1/predict", gate.at(admitted, Access::Trade))
        .route(
            "/api/v1/outcomes",
            gate.at(post(outcomes::post), Access::Trade),
        );
    common(state, &gate, trading)
}

/// The operator lane's router (`server.admin_listen`): every route but the trading ones
/// (decisions and outcomes answer 404 there), under the same keys and roles.
pub fn operator_router(state: Arc<AppState>) -> Router {
    let gate = Gate(state.auth.clone());
    common(state, &gate, Router::new())
}

/// The routes both lanes serve, after `lane`'s own, with the fallbacks and the tracking layer.
fn common(state: Arc<AppState>, gate: &Gate, lane: Router<Arc<AppState>>) -> Router {
    lane.route("/api/v1/models", gate.at(get(models::models), Access::Read))
        .route(
            "/api/v1/models/reload",
            gate.at(post(models::reload), Access::Operate),
        )
        .route(
            "/api/v1/symbols",
            gate.at(get(models::symbols), Access::Read),
        )
        .route("/api/v1/bars", gate.at(post(bars::post), Access::Operate))
        .merge(control_routes(gate))
        .route("/health/live", get(ops::live))
        .route("/health/ready", gate.at(get(ops::ready), Access::Ops))
        .route("/metrics", gate.at(get(ops::metrics), Access::Ops))
        .route("/openapi.json", gate.at(get(ops::openapi), Access::Read))
        .route("/api/v1/stats", gate.at(get(stats::stats), Access::Read))
        // The page holds no data (it asks for a key when /api/v1/stats needs one).
        .route("/dashboard", get(stats::dashboard))
        .fallback(|| async { ApiError::not_found().into_response() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

/// Experiments, rollouts, the kill switch and trading halts: reads for every role, changes for
/// operators.
fn control_routes(gate: &Gate) -> Router<Arc<AppState>> {
    let (read, operate) = (Access::Read, Access::Operate);
    Router::new()
        .route(
            "/api/v1/experiments",
            gate.at(get(experiments::list), read)
                .merge(gate.at(post(experiments::create), operate)),
        )
        .route(
            "/api/v1/experiments/{id}",
            gate.at(get(experiments::get), read)
                .merge(gate.at(put(experiments::update).delete(experiments::stop), operate)),
        )
        .route(
            "/api/v1/experiments/{id}/report",
            gate.at(get(experiments::report), read),
        )
        .route(
            "/api/v1/rollouts",
            gate.at(get(rollouts::list), read)
                .merge(gate.at(post(rollouts::create), operate)),
        )
        .route("/api/v1/rollouts/{id}", gate.at(get(rollouts::get), read))
        .route(
            "/api/v1/rollouts/{id}/promote",
            gate.at(post(rollouts::promote), operate),
        )
        .route(
            "/api/v1/rollouts/{id}/pause",
            gate.at(post(rollouts::pause), operate),
        )
        .route(
            "/api/v1/rollouts/{id}/rollback",
            gate.at(post(rollouts::rollback), operate),
        )
        .route(
            "/api/v1/rollback",
            gate.at(post(rollouts::kill_switch), operate),
        )
        .route(
            "/api/v1/halts",
            gate.at(get(halts::list), read)
                .merge(gate.at(post(halts::create), operate)),
        )
        .route(
            "/api/v1/halts/{id}",
            gate.at(delete(halts::release), operate),
        )
}

/// Puts a route behind the key check (when keys are configured).
struct Gate(Option<Arc<tradeserve_auth::Auth>>);

impl Gate {
    fn at(
        &self,
        route: MethodRouter<Arc<AppState>>,
        access: Access,
    ) -> MethodRouter<Arc<AppState>> {
        match &self.0 {
            Some(a) => route.route_layer(middleware::from_fn_with_state(
                (Arc::clone(a), access),
                auth::guard,
            )),
            None => route,
        }
    }
}

async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let headers_in = Instant::now();
    let route = if request.uri().path() == "/api/v1/predict" {
        Route::Predict
    } else {
        Route::Other
    };
    let logged = (state.access_log != AccessLog::Off)
        .then(|| (request.method().clone(), request.uri().clone()));
    let response = next.run(request).await;
    let from = response
        .extensions()
        .get::<Arrival>()
        .map_or(headers_in, |a| a.instant);
    let status = response.status().as_u16();
    let seconds = from.elapsed().as_secs_f64();
    state
        .metrics
        .observe_response(Protocol::Http, route, status, seconds);
    let decision = response.extensions().get::<DecisionId>();
    if let Some((method, uri)) = logged
        && state.access_log.wants(status, decision.is_some())
    {
        let path = uri.path();
        tracing::info!(
            target: "tradeserve::access",
            %method,
            %path,
            status,
            latency_ms = seconds * 1e3,
            decision_id = decision.map(|d| tracing::field::display(d.0)),
            "request"
        );
    }
    response
}
