//! `tradeserve.v1.Decisions/Predict`: `POST /api/v1/predict` over gRPC. The request becomes
//! the REST body and goes through the same pipeline — parsing and validation, idempotency,
//! routing, risk, audit and Kafka records — under the same admission limit and role
//! (trader); the answer is the REST body as a `Decision`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use tonic::{Request, Response, Status};
use tradeserve_auth::Access;
use tradeserve_core::Outcome;
use tradeserve_core::idempotency::Stored;
use tradeserve_core::pipeline::{Answered, Requester};
use tradeserve_grpc::tradeserve::v1 as pb;
use tradeserve_grpc::tradeserve::v1::decisions_server::Decisions;

use crate::error::ApiError;
use crate::metrics::Route;
use crate::routes::admit::{Admitted, Arrival};
use crate::routes::predict::{client_id, failure, idempotency_key, settle};
use crate::state::AppState;

use super::{call, convert, status};

/// The native decision service.
pub struct DecisionService {
    pub state: Arc<AppState>,
}

/// The REST body a `PredictRequest` stands for.
#[derive(Serialize)]
struct Body<'a> {
    symbol: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_override: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk_check: Option<bool>,
    explain: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_order_id: Option<&'a str>,
}

impl Body<'_> {
    fn of(r: &pb::PredictRequest) -> Body<'_> {
        Body {
            symbol: &r.symbol,
            timestamp: r.timestamp.as_deref(),
            strategy_override: r.strategy_override.as_deref(),
            risk_check: r.risk_check,
            explain: r.explain,
            client_order_id: r.client_order_id.as_deref(),
        }
    }
}

/// The message of a refused decision's `error` (as REST's 403 body has it).
const REJECTED: &str = "the decision failed one or more risk checks";

#[tonic::async_trait]
impl Decisions for DecisionService {
    async fn predict(
        &self,
        request: Request<pb::PredictRequest>,
    ) -> Result<Response<pb::Decision>, Status> {
        let arrival = Arrival::now();
        let result = decide(&self.state, request, arrival).await;
        call::observe(&self.state, Route::Predict, arrival, &result);
        result.map(Response::new)
    }
}

/// One decision for `request`, as the REST handler makes it.
pub async fn decide(
    state: &Arc<AppState>,
    request: Request<pb::PredictRequest>,
    arrival: Arrival,
) -> Result<pb::Decision, Status> {
    let metadata = request.metadata();
    let caller = call::authorize(state, metadata, Access::Trade).await?;
    let deadline = call::timeout(metadata)?;
    let api = |e: ApiError| status::from_api(&e);
    let client = client_id(call::text(metadata, "x-client-id")).map_err(api)?;
    let key = idempotency_key(call::text(metadata, "idempotency-key")).map_err(api)?;
    let body = serde_json::to_vec(&Body::of(request.get_ref()))
        .map_err(|e| Status::internal(format!("cannot encode the request: {e}")))?;
    let Some(_admitted) = Admitted::try_new(state) else {
        return Err(api(ApiError::overloaded()));
    };
    let routing = state
        .control
        .routing()
        .ok_or_else(|| api(ApiError::not_ready("models are not loaded")))?;
    let who = Requester {
        client,
        actor: caller.as_ref().map(|c| &*c.id),
        idempotency_key: key,
        desk_limits: caller.as_ref().map(|c| c.limits).unwrap_or_default(),
        deadline,
    };
    let span = tracing::debug_span!("decision", decision_id = tracing::field::Empty);
    let result = tracing::Instrument::instrument(
        state
            .pipeline
            .decide(&routing, &body, arrival.instant, arrival.wall, who),
        span,
    )
    .await;
    match result {
        Ok(Answered::Fresh(prediction)) => {
            settle(state, &prediction);
            let approved = matches!(prediction.outcome, Outcome::Approved(_));
            let json = serde_json::to_value(prediction.outcome.decision())
                .map_err(|e| Status::internal(format!("cannot serialize decision: {e}")))?;
            answer(json, approved, false)
        }
        Ok(Answered::Repeat(stored)) => repeat(state, &stored),
        Err(failed) => Err(api(failure(state, failed))),
    }
}

/// The decision kept under the request's idempotency key, marked `repeat`.
fn repeat(state: &AppState, stored: &Stored) -> Result<pb::Decision, Status> {
    let json: Value = serde_json::from_slice(&stored.decision)
        .map_err(|e| Status::internal(format!("stored decision unreadable: {e}")))?;
    state.metrics.decisions_repeated.inc();
    answer(json, stored.approved, true)
}

/// The REST body (a decision, with `error` when refused) as a message.
fn answer(json: Value, approved: bool, repeat: bool) -> Result<pb::Decision, Status> {
    let Value::Object(mut map) = json else {
        return Err(Status::internal("a decision is not an object"));
    };
    if repeat {
        map.insert("repeat".into(), Value::Bool(true));
    }
    if !approved {
        let mut error = Map::new();
        error.insert("code".into(), "risk_rejected".into());
        error.insert("message".into(), REJECTED.into());
        map.insert("error".into(), Value::Object(error));
    }
    convert::decision(&map)
}
