//! Every Prometheus metric the service exports, named in one place.
//!
//! Label sets are closed (routes, statuses, actions, stages are enums or fixed lists), and
//! per-request handles are resolved once at start, so recording is a few atomic adds.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tradeserve_core::control::{ControlAction, Subject};
use tradeserve_core::experiment::Arm;
use tradeserve_core::halt::{ActiveHalts, HaltScope};
use tradeserve_core::pipeline::StageTimings;
use tradeserve_core::rollout::Stage;
use tradeserve_core::routing::UnitKind;
use tradeserve_core::types::{Action, Role};
use tradeserve_events::SinkMetrics;
use tradeserve_events::kafka::KafkaMetrics;

pub use crate::feed_metrics::FeedMetrics;
use tradeserve_auth::AuthMetrics;

/// Latency buckets in seconds: fine below a millisecond, coarse up to a second.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_15, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001,
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Statuses the service answers with; anything else is recorded as "other".
pub const STATUSES: &[u16] = &[
    200, 400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 501, 502, 503, 504,
];

/// [`STATUSES`] as labels, then "other" (the last response counter of each route).
const STATUS_LABELS: [&str; 16] = [
    "200", "400", "401", "403", "404", "405", "409", "413", "422", "429", "500", "501", "502",
    "503", "504", "other",
];

/// Routes with their own latency series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Predict,
    Other,
}

/// The protocol a request came in by: the response metrics' `protocol` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    const ALL: [Protocol; 2] = [Protocol::Http, Protocol::Grpc];

    fn label(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Predict => "predict",
            Route::Other => "other",
        }
    }
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    /// Per protocol ([`Protocol::ALL`] order).
    predict_latency: [Histogram; 2],
    other_latency: [Histogram; 2],
    /// Per protocol and route, one counter per entry of [`STATUSES`] plus "other" last.
    responses: [[Vec<IntCounter>; 2]; 2],
    decisions: [[IntCounter; 2]; 3],
    stage_parse: Histogram,
    stage_features: Histogram,
    stage_inference: Histogram,
    stage_risk: Histogram,
    stage_explain: Histogram,
    pub in_flight: IntGauge,
    pub ready: IntGauge,
    /// The replica's measured capacity (`server.capacity_per_second`), for the load alert.
    pub capacity: Gauge,
    pub model_load_failures: IntCounter,
    pub model_reloads_swapped: IntCounter,
    pub model_reloads_unchanged: IntCounter,
    pub model_reloads_refused: IntCounter,
    pub model_reloads_unavailable: IntCounter,
    pub registry_up: IntGauge,
    /// Decisions answered although their event could not be recorded (`events.on_failure = "serve"`).
    pub decisions_unrecorded: IntCounter,
    /// Requests answered with the decision kept under their idempotency key.
    pub decisions_repeated: IntCounter,
    /// Open client connections.
    pub connections_open: IntGauge,
    /// Connections refused at `server.max_connections` (answered 503 and closed).
    pub connections_refused: IntCounter,
    /// TLS handshakes that failed or timed out (`server.tls`).
    pub tls_handshake_failures: IntCounter,
    /// The operator lane's open connections and refusals at its cap (`server.admin_listen`).
    pub admin_connections: (IntGauge, IntCounter),
    /// The audit log's counters (label `sink="audit_log"`).
    pub events: SinkMetrics,
    /// The Kafka sink's counters (label `sink="kafka"`, plus `tradeserve_kafka_*`).
    pub kafka: KafkaMetrics,
    /// Experiments, rollouts and shadow runs.
    pub control: ControlMetrics,
    /// Remote model backends.
    pub backends: BackendMetrics,
    /// The live feed (`features.source = "live"`).
    pub feed: FeedMetrics,
    /// The drift monitor.
    pub drift: crate::drift::metrics::DriftMetrics,
    /// Requests refused by authentication and quotas.
    pub auth: AuthMetrics,
}

/// Series of the remote model backends, by role (every role's series exists from the start).
#[derive(Clone)]
pub struct BackendMetrics {
    /// Decisions whose role was answered by its in-process copy after its backend failed.
    fallbacks: IntCounterVec,
    /// Failed calls that failed the request (no fallback): unavailable or past the deadline.
    failures: IntCounterVec,
    /// 1 while the role's circuit is open (calls fail at once until a probe succeeds).
    circuit_open: IntGaugeVec,
}

impl BackendMetrics {
    fn new(registry: &Registry) -> Result<BackendMetrics, prometheus::Error> {
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "tradeserve_backend_fallbacks_total",
                "Decisions whose role was answered by its in-process copy after its remote backend failed",
            ),
            &["role"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "tradeserve_backend_failures_total",
                "Requests failed by a remote backend, by role and reason (unavailable, deadline)",
            ),
            &["role", "reason"],
        )?;
        let circuit_open = IntGaugeVec::new(
            Opts::new(
                "tradeserve_backend_circuit_open",
                "1 while the role's remote backend circuit is open",
            ),
            &["role"],
        )?;
        registry.register(Box::new(fallbacks.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(circuit_open.clone()))?;
        for role in Role::ALL {
            fallbacks.with_label_values(&[role.as_str()]);
            circuit_open.with_label_values(&[role.as_str()]);
            for reason in ["unavailable", "deadline"] {
                failures.with_label_values(&[role.as_str(), reason]);
            }
        }
        Ok(BackendMetrics {
            fallbacks,
            failures,
            circuit_open,
        })
    }

    pub fn fell_back(&self, role: Role) {
        self.fallbacks.with_label_values(&[role.as_str()]).inc();
    }

    /// `reason`: `unavailable` or `deadline`.
    pub fn failed(&self, role: Role, reason: &str) {
        self.failures
            .with_label_values(&[role.as_str(), reason])
            .inc();
    }

    pub fn set_circuit(&self, role: Role, open: bool) {
        self.circuit_open
            .with_label_values(&[role.as_str()])
            .set(i64::from(open));
    }
}

/// Series of the control plane (experiments, rollouts, shadow, kill switch).
#[derive(Clone)]
pub struct ControlMetrics {
    /// `[kind][arm]`: by [`ControlMetrics::arm_decided`].
    arm_decisions: [[IntCounter; 2]; 2],
    pub shadow_agreed: IntCounter,
    pub shadow_disagreed: IntCounter,
    pub shadow_errors: IntCounter,
    pub shadow_shed: IntCounter,
    /// Stage of the active rollout: 0 none, 1 shadow, 2 canary, 3 partial, 4 full.
    pub rollout_stage: IntGauge,
    /// 1 while the active rollout's candidate has had no traffic for `control.stage_idle_after`.
    pub rollout_starved: IntGauge,
    pub experiment_running: IntGauge,
    pub revision: IntGauge,
    pub store_up: IntGauge,
    transitions: IntCounterVec,
    /// Active trading halts by scope kind.
    halts_active: IntGaugeVec,
}

impl ControlMetrics {
    fn new(registry: &Registry) -> Result<ControlMetrics, prometheus::Error> {
        let arms = IntCounterVec::new(
            Opts::new(
                "tradeserve_arm_decisions_total",
                "Decisions by experiment or rollout arm",
            ),
            &["kind", "arm"],
        )?;
        registry.register(Box::new(arms.clone()))?;
        let shadow = IntCounterVec::new(
            Opts::new(
                "tradeserve_shadow_runs_total",
                "Shadow candidate runs by result (shed = skipped under load)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(shadow.clone()))?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "tradeserve_control_changes_total",
                "Experiment and rollout changes by subject and action",
            ),
            &["subject", "action"],
        )?;
        registry.register(Box::new(transitions.clone()))?;
        let halts_active = IntGaugeVec::new(
            Opts::new(
                "tradeserve_halts_active",
                "Trading halts in force on this replica, by scope (all, symbol, desk, model_version)",
            ),
            &["scope"],
        )?;
        registry.register(Box::new(halts_active.clone()))?;
        for kind in HaltScope::KINDS {
            halts_active.with_label_values(&[kind]);
        }
        // Every series from the start, at 0: Prometheus's increase() cannot see a series'
        // first increment, so the first rollback after a start would not fire its alert.
        for subject in Subject::ALL {
            for action in ControlAction::ALL {
                transitions.with_label_values(&[subject.as_str(), action.as_str()]);
            }
        }
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let arm = |kind: &str| ["control", "treatment"].map(|a| arms.with_label_values(&[kind, a]));
        Ok(ControlMetrics {
            arm_decisions: [arm("experiment"), arm("rollout")],
            shadow_agreed: shadow.with_label_values(&["agreed"]),
            shadow_disagreed: shadow.with_label_values(&["disagreed"]),
            shadow_errors: shadow.with_label_values(&["error"]),
            shadow_shed: shadow.with_label_values(&["shed"]),
            rollout_stage: gauge(
                "tradeserve_rollout_stage",
                "Stage of the active rollout: 0 none, 1 shadow, 2 canary, 3 partial, 4 full",
            )?,
            rollout_starved: gauge(
                "tradeserve_rollout_stage_starved",
                "1 while the active rollout stage's candidate has received no traffic for control.stage_idle_after",
            )?,
            experiment_running: gauge(
                "tradeserve_experiment_running",
                "1 while an experiment is running",
            )?,
            revision: gauge(
                "tradeserve_control_revision",
                "Revision of the control state this replica serves",
            )?,
            store_up: gauge(
                "tradeserve_control_store_up",
                "1 when the last call to the control store succeeded",
            )?,
            transitions,
            halts_active,
        })
    }

    /// The halts the published routing snapshot enforces.
    pub fn halts(&self, active: &ActiveHalts) {
        for (kind, n) in active.by_kind() {
            self.halts_active
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Count one change (subjects and actions are closed sets: `tradeserve_core::control::event`).
    /// What the published routing snapshot routes: an experiment or not, the rollout's stage.
    pub fn routed(&self, experiment: bool, rollout: Option<Stage>) {
        self.experiment_running.set(i64::from(experiment));
        self.rollout_stage.set(match rollout {
            Some(Stage::Shadow) => 1,
            Some(Stage::Canary) => 2,
            Some(Stage::Partial) => 3,
            Some(Stage::Full) => 4,
            _ => 0,
        });
    }

    /// Count a decision in an experiment's or rollout's arm.
    pub fn arm_decided(&self, kind: UnitKind, arm: Arm) {
        let k = match kind {
            UnitKind::Experiment => 0,
            UnitKind::Rollout => 1,
        };
        self.arm_decisions[k][arm.index()].inc();
    }

    pub fn changed(&self, subject: &str, action: &str) {
        self.transitions.with_label_values(&[subject, action]).inc();
    }
}

impl Metrics {
    /// The listener's counters (the same series, shared).
    pub fn connections(&self) -> tradeserve_transport::ConnectionMetrics {
        tradeserve_transport::ConnectionMetrics {
            open: self.connections_open.clone(),
            refused: self.connections_refused.clone(),
            tls_handshake_failures: self.tls_handshake_failures.clone(),
        }
    }

    /// The operator lane's counters (its own open and refused series; TLS failures shared).
    pub fn admin_connections(&self) -> tradeserve_transport::ConnectionMetrics {
        tradeserve_transport::ConnectionMetrics {
            open: self.admin_connections.0.clone(),
            refused: self.admin_connections.1.clone(),
            tls_handshake_failures: self.tls_handshake_failures.clone(),
        }
    }

    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "tradeserve_request_duration_seconds",
                "Server-side request latency, from arrival to response, by route and protocol (http, grpc)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "protocol"],
        )?;
        let responses = IntCounterVec::new(
            Opts::new(
                "tradeserve_http_responses_total",
                "Responses by route, status and protocol (gRPC calls counted under the HTTP status the REST API would have answered)",
            ),
            &["route", "status", "protocol"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "tradeserve_decisions_total",
                "Decisions by action and risk outcome",
            ),
            &["action", "outcome"],
        )?;
        let stages = HistogramVec::new(
            HistogramOpts::new(
                "tradeserve_stage_duration_seconds",
                "Time per decision stage",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["stage"],
        )?;
        let in_flight = IntGauge::new(
            "tradeserve_in_flight_requests",
            "Prediction requests being processed",
        )?;
        let ready = IntGauge::new(
            "tradeserve_ready",
            "1 when models are loaded and the service is not draining",
        )?;
        let model_load_failures = IntCounter::new(
            "tradeserve_model_load_failures_total",
            "Model sets that failed to load or verify",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "tradeserve_model_reloads_total",
                "Model registry reloads by result",
            ),
            &["result"],
        )?;
        let registry_up = IntGauge::new(
            "tradeserve_model_registry_up",
            "1 when the last call to the model registry succeeded",
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(registry_up.clone()))?;
        let sinks = SinkVecs::new(&registry)?;
        let events = sinks.for_sink("audit_log");
        let kafka = KafkaMetrics {
            sink: sinks.for_sink("kafka"),
            wal: sinks.for_sink("kafka_wal"),
            delivered: counter(
                &registry,
                "tradeserve_kafka_delivered_total",
                "Events acknowledged by the broker on first send",
            )?,
            spooled: counter(
                &registry,
                "tradeserve_kafka_spooled_total",
                "Events written to the on-disk spool",
            )?,
            replayed: counter(
                &registry,
                "tradeserve_kafka_replayed_total",
                "Spooled events delivered after the broker came back",
            )?,
            delivery_failures: counter(
                &registry,
                "tradeserve_kafka_delivery_failures_total",
                "Failed deliveries (the event went to the spool)",
            )?,
            producer_rebuilds: counter(
                &registry,
                "tradeserve_kafka_producer_rebuilds_total",
                "Producers rebuilt after a fatal error",
            )?,
            spool_backlog: {
                let g = IntGauge::new(
                    "tradeserve_kafka_spool_backlog",
                    "Events in the spool waiting for the broker",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            delivery_seconds: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "tradeserve_kafka_delivery_seconds",
                        "From send to broker acknowledgement",
                    )
                    .buckets(vec![
                        0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                        30.0,
                    ]),
                )?;
                registry.register(Box::new(h.clone()))?;
                h
            },
        };
        let control = ControlMetrics::new(&registry)?;
        let backends = BackendMetrics::new(&registry)?;
        let feed = FeedMetrics::new(&registry)?;
        let drift = crate::drift::metrics::DriftMetrics::new(&registry)?;
        let auth = AuthMetrics::new(&registry)?;
        let decisions_unrecorded = counter(
            &registry,
            "tradeserve_decisions_unrecorded_total",
            "Decisions answered although their event could not be recorded (events.on_failure = serve)",
        )?;
        let decisions_repeated = counter(
            &registry,
            "tradeserve_decisions_repeated_total",
            "Requests answered with the decision already made for their idempotency key (no second booking, no second event)",
        )?;
        let connections_open =
            IntGauge::new("tradeserve_connections_open", "Open client connections")?;
        registry.register(Box::new(connections_open.clone()))?;
        let connections_refused = counter(
            &registry,
            "tradeserve_connections_refused_total",
            "Connections refused at server.max_connections (answered 503 and closed)",
        )?;
        let tls_handshake_failures = counter(
            &registry,
            "tradeserve_tls_handshake_failures_total",
            "TLS handshakes that failed (bad or missing client certificate, not TLS) or timed out",
        )?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(stages.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        let capacity = Gauge::new(
            "tradeserve_capacity_decisions_per_second",
            "Decisions per second this replica can sustain at client p99 < 10 ms (server.capacity_per_second, measured: docs/BENCHMARKS.md)",
        )?;
        registry.register(Box::new(capacity.clone()))?;
        registry.register(Box::new(model_load_failures.clone()))?;

        // Every series exists from the start, so dashboards see zeros rather than gaps.
        let per_route = |route: Route, p: Protocol| -> Vec<IntCounter> {
            let (route, p) = (route.label(), p.label());
            let mut v: Vec<IntCounter> = STATUSES
                .iter()
                .map(|s| responses.with_label_values(&[route, &s.to_string(), p]))
                .collect();
            v.push(responses.with_label_values(&[route, "other", p]));
            v
        };
        let responses =
            Protocol::ALL.map(|p| [per_route(Route::Predict, p), per_route(Route::Other, p)]);
        let decision = |a: Action, o: &str| decisions.with_label_values(&[a.as_str(), o]);
        let decisions = Action::ALL.map(|a| [decision(a, "approved"), decision(a, "rejected")]);
        Ok(Metrics {
            predict_latency: Protocol::ALL
                .map(|p| latency.with_label_values(&["predict", p.label()])),
            other_latency: Protocol::ALL.map(|p| latency.with_label_values(&["other", p.label()])),
            responses,
            decisions,
            stage_parse: stages.with_label_values(&["parse"]),
            stage_features: stages.with_label_values(&["features"]),
            stage_inference: stages.with_label_values(&["inference"]),
            stage_risk: stages.with_label_values(&["risk"]),
            stage_explain: stages.with_label_values(&["explain"]),
            in_flight,
            ready,
            capacity,
            model_load_failures,
            model_reloads_swapped: reloads.with_label_values(&["swapped"]),
            model_reloads_unchanged: reloads.with_label_values(&["unchanged"]),
            model_reloads_refused: reloads.with_label_values(&["refused"]),
            model_reloads_unavailable: reloads.with_label_values(&["unavailable"]),
            registry_up,
            decisions_unrecorded,
            decisions_repeated,
            connections_open,
            connections_refused,
            tls_handshake_failures,
            admin_connections: admin_connections(&registry)?,
            events,
            kafka,
            control,
            backends,
            feed,
            drift,
            auth,
            registry,
        })
    }

    /// Record one response.
    pub fn observe_response(&self, protocol: Protocol, route: Route, status: u16, seconds: f64) {
        let p = usize::from(protocol == Protocol::Grpc);
        match route {
            Route::Predict => self.predict_latency[p].observe(seconds),
            Route::Other => self.other_latency[p].observe(seconds),
        }
        let counters = &self.responses[p][usize::from(route == Route::Other)];
        let i = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        if let Some(c) = counters.get(i) {
            c.inc();
        }
    }

    /// Record a decision and its stage timings.
    /// Models come from bundled folders: there is no registry, so `tradeserve_model_registry_up`
    /// is not exported (a constant 0 would read as an alarm).
    pub fn without_registry(&self) {
        let _ = self.registry.unregister(Box::new(self.registry_up.clone()));
    }

    pub fn observe_decision(&self, action: Action, approved: bool, timings: &StageTimings) {
        let a = match action {
            Action::Buy => 0,
            Action::Sell => 1,
            Action::Hold => 2,
        };
        self.decisions[a][usize::from(!approved)].inc();
        self.stage_parse.observe(timings.parse.as_secs_f64());
        self.stage_features.observe(timings.features.as_secs_f64());
        self.stage_inference
            .observe(timings.inference.as_secs_f64());
        self.stage_risk.observe(timings.risk.as_secs_f64());
        if !timings.explain.is_zero() {
            self.stage_explain.observe(timings.explain.as_secs_f64());
        }
    }

    /// The decision route's cumulative counters now, both protocols together (for the
    /// dashboard's last minute).
    pub fn sample(&self) -> crate::stats_window::Sample {
        use prometheus::core::Metric as _;
        let mut latency: Vec<u64> = Vec::new();
        for h in &self.predict_latency {
            let m = h.metric();
            let buckets = m.get_histogram().get_bucket();
            let counts = buckets
                .iter()
                .map(|b| b.cumulative_count())
                .chain([h.get_sample_count()]);
            if latency.is_empty() {
                latency = counts.collect();
            } else {
                latency.iter_mut().zip(counts).for_each(|(a, b)| *a += b);
            }
        }
        let [http, grpc] = &self.responses;
        crate::stats_window::Sample {
            at: std::time::Instant::now(),
            latency,
            statuses: STATUS_LABELS
                .iter()
                .zip(http[0].iter().zip(&grpc[0]))
                .map(|(l, (a, b))| (*l, a.get() + b.get()))
                .collect(),
            decisions: self
                .decisions
                .each_ref()
                .map(|a| a.each_ref().map(IntCounter::get)),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The operator lane's open connections and refusals at its cap.
fn admin_connections(registry: &Registry) -> Result<(IntGauge, IntCounter), prometheus::Error> {
    let open = IntGauge::new(
        "tradeserve_admin_connections_open",
        "Open connections on the operator lane (server.admin_listen)",
    )?;
    registry.register(Box::new(open.clone()))?;
    let refused = counter(
        registry,
        "tradeserve_admin_connections_refused_total",
        "Operator-lane connections refused at server.admin_max_connections",
    )?;
    Ok((open, refused))
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// The generic event-sink series, one label value per sink.
struct SinkVecs {
    enqueued: IntCounterVec,
    written: IntCounterVec,
    dropped_queue_full: IntCounterVec,
    dropped_closed: IntCounterVec,
    write_errors: IntCounterVec,
    backlog: prometheus::IntGaugeVec,
    unavailable: prometheus::IntGaugeVec,
}

impl SinkVecs {
    fn new(registry: &Registry) -> Result<SinkVecs, prometheus::Error> {
        let vec = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let v = IntCounterVec::new(Opts::new(name, help), &["sink"])?;
            registry.register(Box::new(v.clone()))?;
            Ok(v)
        };
        let backlog = prometheus::IntGaugeVec::new(
            Opts::new(
                "tradeserve_events_backlog",
                "Decision events queued in memory, not yet handled by the sink",
            ),
            &["sink"],
        )?;
        registry.register(Box::new(backlog.clone()))?;
        let unavailable = prometheus::IntGaugeVec::new(
            Opts::new(
                "tradeserve_events_sink_unavailable",
                "1 while the sink cannot record decision events (decisions refused with 503 audit_unavailable, or served unrecorded)",
            ),
            &["sink"],
        )?;
        registry.register(Box::new(unavailable.clone()))?;
        Ok(SinkVecs {
            enqueued: vec(
                "tradeserve_events_enqueued_total",
                "Decision events accepted by the sink",
            )?,
            written: vec(
                "tradeserve_events_written_total",
                "Decision events written (audit log) or delivered (Kafka)",
            )?,
            dropped_queue_full: vec(
                "tradeserve_events_dropped_queue_full_total",
                "Decision events refused because the sink queue was full (the decision was refused too, or counted unrecorded)",
            )?,
            dropped_closed: vec(
                "tradeserve_events_dropped_closed_total",
                "Decision events refused because the sink was shut down (lost: also logged)",
            )?,
            write_errors: vec(
                "tradeserve_events_write_errors_total",
                "Decision events accepted but not written or spooled (I/O error: lost, also logged)",
            )?,
            backlog,
            unavailable,
        })
    }

    fn for_sink(&self, sink: &str) -> SinkMetrics {
        SinkMetrics {
            enqueued: self.enqueued.with_label_values(&[sink]),
            written: self.written.with_label_values(&[sink]),
            dropped_queue_full: self.dropped_queue_full.with_label_values(&[sink]),
            dropped_closed: self.dropped_closed.with_label_values(&[sink]),
            write_errors: self.write_errors.with_label_values(&[sink]),
            backlog: self.backlog.with_label_values(&[sink]),
            unavailable: self.unavailable.with_label_values(&[sink]),
        }
    }
}
