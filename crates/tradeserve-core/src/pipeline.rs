//! The decision pipeline (the hot path), with no I/O of its own:
//! validate → features → regime detector → meta-controller → specialists → blend → size →
//! risk → enqueue the event. Ports do the I/O; the caller supplies the routing snapshot it
//! loaded once for this request, and [`Routing::route`] picks the model set (experiment arm,
//! rollout stage) once the features are known. The decision's event is recorded before the
//! decision is returned; when it cannot be, the decision is refused (and its risk booking
//! undone) unless the policy says to serve it unrecorded. In shadow stage the candidate runs
//! afterwards on the [`ShadowRunner`], which records a separate shadow result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::control::ArmRecorder;
use crate::decision::{
    Decision, DecisionEvent, DecisionEventType, EVENT_SCHEMA_VERSION, ExperimentArm, FeatureValues,
    Metadata, RegimeProbabilities, RiskCheckFlags, StrategyWeights,
};
pub use crate::error::PredictError;
use crate::experiment::Unit;
use crate::explain::ExplainConfig;
use crate::idempotency::{Claim, IdempotencyStore, InMemoryIdempotency, Stored};
pub use crate::kernel::{Evaluation, Fetched, Sized, evaluate, evaluate_with, kernel, kernel_with};
use crate::ports::{
    EmitError, EventSink, ExplainJob, Explainer, FeatureSnapshot, FeatureSource, RiskLedger,
    ShadowJob, ShadowRunner, Unhealthy,
};
pub use crate::prediction::{Failed, Outcome, Prediction, StageTimings};
use crate::remote;
use crate::request::{PredictRequest, RequestError, RequestRules, parse_predict_request};
use crate::risk::{DeskLimits, Order, RiskLimits, RiskValidation};
use crate::routing::{Route, Routing};
use crate::sizing::SizingPolicy;
use crate::types::{Action, RoleSet};

/// Knobs of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub sizing: SizingPolicy,
    pub risk: RiskLimits,
    pub request: RequestRules,
    /// A decision later than this after arrival is not returned (504).
    pub deadline: Duration,
    pub explain: ExplainConfig,
    /// What to do with a decision whose event cannot be recorded.
    pub on_event_failure: EventFailurePolicy,
    /// What a remote role's failure leads to.
    pub backend_fallback: remote::Fallback,
}

/// What happens to a decision whose event the sink cannot record (disk full, I/O error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFailurePolicy {
    /// Refuse it (503 `audit_unavailable`) and undo its risk booking: nothing is answered
    /// that is not recorded. The default.
    #[default]
    Reject,
    /// Answer it anyway, counted as unrecorded (for desks that prefer an unrecorded answer
    /// to none).
    Serve,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            sizing: SizingPolicy::default(),
            risk: RiskLimits::default(),
            request: RequestRules::default(),
            deadline: Duration::from_millis(40),
            explain: ExplainConfig::default(),
            on_event_failure: EventFailurePolicy::Reject,
            backend_fallback: remote::Fallback::None,
        }
    }
}

/// One request on its way through the pipeline: the parsed body, where it was routed, its
/// id and clocks, and the caller.
#[derive(Clone, Copy)]
struct Call<'a> {
    request: &'a PredictRequest,
    route: &'a Route,
    decision_id: Uuid,
    arrival: Instant,
    now: OffsetDateTime,
    who: Requester<'a>,
    /// The id of the trading halt covering this decision's order, if one does.
    halt: Option<&'a str>,
}

/// Who asked for a decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requester<'a> {
    /// The caller's own id (`X-Client-Id`), for client bucketing.
    pub client: Option<&'a str>,
    /// The authenticated API key's id (`None` without authentication): the event's `actor`.
    pub actor: Option<&'a str>,
    /// The `Idempotency-Key` header (already checked against [`crate::request::valid_key`]).
    pub idempotency_key: Option<&'a str>,
    /// The API key's own risk limits (its desk's).
    pub desk_limits: DeskLimits,
    /// The caller's own deadline (gRPC's `grpc-timeout`), counted from arrival: it shortens
    /// the configured one, never lengthens it.
    pub deadline: Option<Duration>,
}

/// A request's answer: decided now, or the decision kept under its idempotency key.
#[derive(Debug)]
pub enum Answered {
    Fresh(Box<Prediction>),
    Repeat(Stored),
}

/// The request's idempotency key, scoped to the API key that asks (two desks may use the
/// same ids): the body's `client_order_id` or the `Idempotency-Key` header, which must agree
/// when both are given (422 otherwise).
fn idempotency_key(
    request: &PredictRequest,
    who: Requester<'_>,
) -> Result<Option<String>, PredictError> {
    let key = match (request.client_order_id.as_deref(), who.idempotency_key) {
        (Some(body), Some(header)) if body != header => {
            return Err(PredictError::from(RequestError::invalid(
                "invalid_value",
                "client_order_id differs from the Idempotency-Key header",
                Some("client_order_id".to_owned()),
            )));
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => return Ok(None),
    };
    Ok(Some(format!("{}/{key}", who.actor.unwrap_or(""))))
}

/// What makes two requests with the same key the same request: every field that changes the
/// decision (the key itself aside).
fn fingerprint(r: &PredictRequest) -> String {
    let at = r.timestamp.map(|t| t.unix_timestamp_nanos());
    format!(
        "{}|{at:?}|{:?}|{}|{}",
        r.symbol.as_str(),
        r.strategy_override,
        r.risk_check,
        r.explain
    )
}

/// The decision service: ports plus configuration.
pub struct Pipeline {
    features: Arc<dyn FeatureSource>,
    ledger: Arc<dyn RiskLedger>,
    events: Arc<dyn EventSink>,
    shadow: Option<Arc<dyn ShadowRunner>>,
    explainer: Arc<dyn Explainer>,
    /// Requests with an idempotency key: decided once.
    idempotency: Arc<dyn IdempotencyStore>,
    /// Credited with every fresh decision and every routed failure.
    arms: Option<Arc<dyn ArmRecorder>>,
    config: PipelineConfig,
}

impl Pipeline {
    pub fn new(
        features: Arc<dyn FeatureSource>,
        ledger: Arc<dyn RiskLedger>,
        events: Arc<dyn EventSink>,
        config: PipelineConfig,
    ) -> Pipeline {
        Pipeline {
            features,
            ledger,
            events,
            shadow: None,
            explainer: Arc::new(InlineExplainer::new(config.explain)),
            idempotency: Arc::new(InMemoryIdempotency::new(Default::default())),
            arms: None,
            config,
        }
    }

    /// Keep idempotency keys in `store` (default: this process, with the default limits).
    pub fn with_idempotency(mut self, store: Arc<dyn IdempotencyStore>) -> Pipeline {
        self.idempotency = store;
        self
    }

    /// Run explanations through `explainer` (the server uses a bounded blocking pool).
    pub fn with_explainer(mut self, explainer: Arc<dyn Explainer>) -> Pipeline {
        self.explainer = explainer;
        self
    }

    /// Credit every decision to its arms, and every routed request that got none, through
    /// `recorder`.
    pub fn with_arms(mut self, recorder: Arc<dyn ArmRecorder>) -> Pipeline {
        self.arms = Some(recorder);
        self
    }

    /// Run shadow candidates through `runner`.
    pub fn with_shadow(mut self, runner: Arc<dyn ShadowRunner>) -> Pipeline {
        self.shadow = Some(runner);
        self
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    pub fn feature_source(&self) -> &Arc<dyn FeatureSource> {
        &self.features
    }

    /// `Err(reason)` while decisions cannot be recorded.
    pub fn event_health(&self) -> Result<(), Unhealthy> {
        self.events.health()
    }

    /// `Err(reason)` while orders cannot be risk-checked.
    pub fn risk_health(&self) -> Result<(), Unhealthy> {
        self.ledger.health()
    }

    /// The request's deadline: the configured one, or the caller's when shorter.
    fn deadline(&self, who: &Requester<'_>) -> Duration {
        who.deadline
            .map_or(self.config.deadline, |d| d.min(self.config.deadline))
    }

    fn check_deadline(&self, call: &Call<'_>) -> Result<(), PredictError> {
        let elapsed = call.arrival.elapsed();
        let deadline = self.deadline(&call.who);
        if elapsed > deadline {
            return Err(PredictError::DeadlineExceeded { deadline, elapsed });
        }
        Ok(())
    }

    /// Decide for one request body. `arrival` is when the request reached the server, `now`
    /// the wall clock at that moment, `who` the caller. A request with an idempotency key
    /// that was decided before is answered with that decision ([`Answered::Repeat`]). A fresh
    /// decision is credited to its arms, and a routed request that got none counts as their
    /// failure ([`Pipeline::with_arms`]); a repeat is not credited again.
    pub async fn decide(
        &self,
        routing: &Routing,
        body: &[u8],
        arrival: Instant,
        now: OffsetDateTime,
        who: Requester<'_>,
    ) -> Result<Answered, Failed> {
        let result = self.decide_once(routing, body, arrival, now, who).await;
        if let Some(arms) = &self.arms {
            match &result {
                Ok(Answered::Fresh(p)) => arms.decided(p),
                Err(Failed {
                    route: Some(route), ..
                }) => arms.failed(route),
                Ok(Answered::Repeat(_)) | Err(_) => {}
            }
        }
        result
    }

    async fn decide_once(
        &self,
        routing: &Routing,
        body: &[u8],
        arrival: Instant,
        now: OffsetDateTime,
        who: Requester<'_>,
    ) -> Result<Answered, Failed> {
        let request = parse_predict_request(body, now, &self.config.request)
            .map_err(|e| Failed::from(PredictError::from(e)))?;
        let Some(key) = idempotency_key(&request, who).map_err(Failed::from)? else {
            return self
                .predict_parsed(routing, &request, arrival, now, who)
                .await
                .map(|p| Answered::Fresh(Box::new(p)));
        };
        let fingerprint = fingerprint(&request);
        match self.idempotency.claim(&key, &fingerprint).await {
            Ok(Claim::New) => {}
            Ok(Claim::Repeat(stored)) => return Ok(Answered::Repeat(stored)),
            Ok(Claim::Conflict) => return Err(PredictError::IdempotencyConflict.into()),
            Ok(Claim::InFlight) => return Err(PredictError::IdempotencyInFlight.into()),
            Err(e) => return Err(PredictError::IdempotencyUnavailable(e.0).into()),
        }
        let result = self
            .predict_parsed(routing, &request, arrival, now, who)
            .await;
        match &result {
            Ok(p) => match serde_json::to_vec(p.outcome.decision()) {
                Ok(bytes) => {
                    let stored = Stored {
                        approved: matches!(p.outcome, Outcome::Approved(_)),
                        decision: bytes.into(),
                    };
                    self.idempotency.complete(&key, &fingerprint, stored).await;
                }
                Err(_) => self.idempotency.abandon(&key, &fingerprint).await,
            },
            Err(_) => self.idempotency.abandon(&key, &fingerprint).await,
        }
        result.map(|p| Answered::Fresh(Box::new(p)))
    }

    /// [`Self::predict`] once the body is parsed (and its key, if any, claimed: the parse
    /// stage's time includes the claim).
    async fn predict_parsed(
        &self,
        routing: &Routing,
        request: &PredictRequest,
        arrival: Instant,
        now: OffsetDateTime,
        who: Requester<'_>,
    ) -> Result<Prediction, Failed> {
        let mut timings = StageTimings::default();
        let t = Instant::now();
        timings.parse = t.duration_since(arrival);
        let snapshot = self
            .features
            .features(request.symbol.as_str(), request.timestamp)
            .instrument(tracing::debug_span!("features"))
            .await
            .map_err(|e| Failed::from(PredictError::from(e)))?;
        let t2 = Instant::now();
        timings.features = t2 - t;
        let decision_id = Uuid::now_v7();
        // The caller's span (the server's `decision`) carries the id, for traces and logs.
        tracing::Span::current().record("decision_id", tracing::field::display(decision_id));
        let route = routing.route(&Unit {
            symbol: request.symbol.as_str(),
            at: request.timestamp.unwrap_or(now),
            client: who.client,
            decision_id,
        });
        let halt = routing
            .halts
            .covering(request.symbol.as_str(), who.actor, route.models.versions())
            .map(|h| h.halt_id.as_str());
        let call = Call {
            request,
            route: &route,
            decision_id,
            arrival,
            now,
            who,
            halt,
        };
        match self.run_stages(&call, snapshot, timings).await {
            Ok(Decided {
                outcome,
                timings,
                snapshot,
                unrecorded,
                fell_back,
            }) => Ok(Prediction {
                outcome,
                timings,
                route,
                snapshot,
                unrecorded,
                fell_back,
            }),
            Err(error) => Err(Failed {
                error,
                route: Some(route),
            }),
        }
    }

    async fn run_stages(
        &self,
        call: &Call<'_>,
        snapshot: FeatureSnapshot,
        mut timings: StageTimings,
    ) -> Result<Decided, PredictError> {
        let Call { request, now, .. } = *call;
        self.check_deadline(call)?;
        let t2 = Instant::now();
        let (Sized { eval, quantity }, fell_back) = self
            .infer(call, &snapshot)
            .instrument(tracing::debug_span!("inference"))
            .await?;
        let t3 = Instant::now();
        timings.inference = t3 - t2;
        self.check_deadline(call)?;

        // Before the risk check, so that an explanation that cannot run (overload) fails the
        // request before a position is recorded. It never changes what was decided.
        let explanation = if request.explain {
            let e = self
                .explain(call, &snapshot, eval.action)
                .instrument(tracing::debug_span!("explain"))
                .await?;
            timings.explain = t3.elapsed();
            Some(e)
        } else {
            None
        };
        let t3 = Instant::now();
        let order = Order {
            symbol: request.symbol.as_str(),
            action: eval.action,
            quantity,
            price: snapshot.price,
            day: now.date(),
            halt: call.halt,
            desk: call.who.actor.unwrap_or("-"),
            desk_limits: call.who.desk_limits,
            at_ms: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        };
        let risk_validation = self.check_risk(request.risk_check, &order).await?;
        timings.risk = t3.elapsed();

        let mut decision = build_decision(call, &snapshot, &eval, quantity, risk_validation);
        decision.explanation = explanation;
        decision.metadata.latency_ms = call.arrival.elapsed().as_secs_f64() * 1e3;
        let (outcome, unrecorded) = self
            .record(call, &snapshot, decision, &order)
            .instrument(tracing::debug_span!("event"))
            .await?;
        Ok(Decided {
            outcome,
            timings,
            snapshot,
            unrecorded,
            fell_back,
        })
    }

    /// The order checked against the risk limits and booked (when the request asks for it).
    async fn check_risk(
        &self,
        wanted: bool,
        order: &Order<'_>,
    ) -> Result<Option<RiskValidation>, PredictError> {
        if !wanted {
            return Ok(None);
        }
        let checked = self
            .ledger
            .check_and_apply(order, &self.config.risk)
            .instrument(tracing::debug_span!("risk"))
            .await?;
        Ok(Some(checked))
    }

    /// The ensemble on the route's model set: its remote roles called first (when it has
    /// any), then the kernel.
    async fn infer(
        &self,
        call: &Call<'_>,
        snapshot: &FeatureSnapshot,
    ) -> Result<(Sized, RoleSet), PredictError> {
        let models = &call.route.models;
        let wanted = call.request.strategy_override;
        let deadline = call.arrival + self.deadline(&call.who);
        let fallback = self.config.backend_fallback;
        let fetched = remote::fetch(models, snapshot, wanted, deadline, fallback).await?;
        let sized = kernel_with(models, snapshot, wanted, &self.config.sizing, &fetched)?;
        Ok((sized, fetched.fell_back))
    }

    /// The explanation of the chosen action (on the explainer's threads), within the deadline.
    async fn explain(
        &self,
        call: &Call<'_>,
        snapshot: &FeatureSnapshot,
        action: Action,
    ) -> Result<crate::explain::Explanation, PredictError> {
        let job = ExplainJob {
            models: Arc::clone(&call.route.models),
            snapshot: snapshot.clone(),
            strategy_override: call.request.strategy_override,
            action,
            deadline: call.arrival + self.deadline(&call.who),
            fallback: self.config.backend_fallback,
        };
        let e = self.explainer.explain(job).await?;
        self.check_deadline(call)?;
        Ok(e)
    }

    /// Record the decision's event before it is answered: `Ok` from the sink means the event
    /// is in the kernel (audit log, write-ahead log). When it cannot be recorded the decision
    /// is refused and its risk booking undone, unless the policy is to serve it unrecorded.
    /// Then hand the decision to the shadow runner when its route shadows a candidate.
    async fn record(
        &self,
        call: &Call<'_>,
        snapshot: &FeatureSnapshot,
        decision: Decision,
        order: &Order<'_>,
    ) -> Result<(Outcome, Option<EmitError>), PredictError> {
        let approved = decision.risk_validation.as_ref().is_none_or(|v| v.approved);
        let event = build_event(&decision, call, snapshot, approved);
        let shadow = self.shadow_job(&event, call.route);
        let unrecorded = match self.events.emit(event.into()) {
            Ok(()) => None,
            Err(e) => match self.config.on_event_failure {
                EventFailurePolicy::Reject => {
                    if call.request.risk_check && approved {
                        self.ledger.revert(order).await;
                    }
                    return Err(PredictError::Unrecorded(e));
                }
                EventFailurePolicy::Serve => Some(e),
            },
        };
        if let (Some(job), Some(runner)) = (shadow, &self.shadow) {
            // A full runner sheds the job (it counts that); the decision is already recorded.
            let _ = runner.submit(job);
        }
        let outcome = if approved {
            Outcome::Approved(decision)
        } else {
            Outcome::Rejected(decision)
        };
        Ok((outcome, unrecorded))
    }

    /// The shadow run of this decision, when its route shadows a candidate.
    fn shadow_job(&self, event: &DecisionEvent, route: &Route) -> Option<ShadowJob> {
        let (Some(_), Some(candidate), Some(tag)) = (&self.shadow, &route.shadow, &route.rollout)
        else {
            return None;
        };
        Some(ShadowJob {
            decision_id: event.decision_id,
            symbol: event.symbol.clone(),
            action: event.action,
            strategy_override: event.strategy_override,
            snapshot: FeatureSnapshot {
                as_of: event.features_as_of,
                price: event.price,
                features: event.features.features,
                hit_rates: event.features.hit_rates,
            },
            rollout: tag.to_ref(),
            candidate: Arc::clone(candidate),
            stats: Arc::clone(&tag.stats),
        })
    }
}

/// What [`Pipeline::decide`] hands back.
struct Decided {
    outcome: Outcome,
    timings: StageTimings,
    snapshot: FeatureSnapshot,
    unrecorded: Option<EmitError>,
    fell_back: RoleSet,
}

fn build_decision(
    call: &Call<'_>,
    snapshot: &FeatureSnapshot,
    eval: &Evaluation,
    quantity: u64,
    risk_validation: Option<crate::risk::RiskValidation>,
) -> Decision {
    let Call {
        request,
        route,
        decision_id,
        now,
        ..
    } = *call;
    let models = &route.models;
    let dominant = models.specialist(eval.dominant);
    Decision {
        decision_id,
        symbol: request.symbol.clone(),
        action: eval.action,
        confidence: eval.confidence,
        recommended_quantity: quantity,
        regime_probabilities: RegimeProbabilities {
            bull: eval.regime[0],
            bear: eval.regime[1],
            sideways: eval.regime[2],
            entropy: eval.entropy,
        },
        strategy_weights: StrategyWeights {
            bull_specialist: eval.weights[0],
            bear_specialist: eval.weights[1],
            sideways_specialist: eval.weights[2],
        },
        risk_validation,
        repeat: false,
        metadata: Metadata {
            model_version: format!("{}_v{}", dominant.info.role, dominant.info.version),
            latency_ms: 0.0,
            timestamp: now,
            model_versions: Arc::clone(models.versions()),
            experiment: route.experiment.as_ref().map(|t| ExperimentArm {
                id: t.id.to_string(),
                arm: t.arm,
            }),
            rollout: route.rollout.as_ref().map(|t| t.to_ref()),
            features_as_of: snapshot.as_of,
        },
        explanation: None,
    }
}

fn build_event(
    decision: &Decision,
    call: &Call<'_>,
    snapshot: &FeatureSnapshot,
    approved: bool,
) -> DecisionEvent {
    let Call {
        request,
        route,
        who,
        ..
    } = *call;
    DecisionEvent {
        schema_version: EVENT_SCHEMA_VERSION,
        event_type: DecisionEventType::TradingDecision,
        timestamp: decision.metadata.timestamp,
        decision_id: decision.decision_id,
        symbol: decision.symbol.clone(),
        action: decision.action,
        quantity: decision.recommended_quantity,
        confidence: decision.confidence,
        regime_probs: decision.regime_probabilities,
        strategy_weights: decision.strategy_weights,
        features: FeatureValues {
            features: snapshot.features,
            hit_rates: snapshot.hit_rates,
        },
        features_as_of: snapshot.as_of,
        price: snapshot.price,
        strategy_override: request.strategy_override,
        risk_checks: decision.risk_validation.as_ref().map(RiskCheckFlags::from),
        risk_warnings: decision
            .risk_validation
            .as_ref()
            .map(|v| v.warnings.clone())
            .unwrap_or_default(),
        approved,
        model_versions: Arc::clone(&decision.metadata.model_versions),
        experiment: route.experiment.as_ref().map(|t| t.to_ref()),
        rollout: route.rollout.as_ref().map(|t| t.to_ref()),
        explanation: decision.explanation.as_ref().map(|e| e.for_event()),
        latency_ms: decision.metadata.latency_ms,
        client_id: who.client.map(str::to_owned),
        actor: who.actor.map(str::to_owned),
        client_order_id: request
            .client_order_id
            .as_deref()
            .or(who.idempotency_key)
            .map(str::to_owned),
    }
}

/// Explanations computed on the caller's thread.
#[derive(Debug, Clone, Copy)]
pub struct InlineExplainer {
    config: ExplainConfig,
}

impl InlineExplainer {
    pub fn new(config: ExplainConfig) -> InlineExplainer {
        InlineExplainer { config }
    }
}

impl Explainer for InlineExplainer {
    fn explain(
        &self,
        job: ExplainJob,
    ) -> crate::ports::BoxFuture<'_, Result<crate::explain::Explanation, PredictError>> {
        let r = crate::explain::explain(
            &job.models,
            &job.snapshot,
            job.strategy_override,
            job.action,
            &self.config,
        );
        Box::pin(std::future::ready(r))
    }
}
