//! Shared state of the running service, built once at start and read by every handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tradeserve_core::ModelSet;
use tradeserve_core::Pipeline;
use tradeserve_core::model_set::BackendState;
use tradeserve_core::ports::{SymbolCoverage, Unhealthy};

use tradeserve_features::live::LiveFeatures;

use crate::arms::ArmBook;
use crate::control::ControlPlane;
use crate::metrics::{LATENCY_BUCKETS, Metrics};
use crate::registry::RegistryManager;
use crate::stats_window::Window;
use crate::telemetry::AccessLog;
use tradeserve_auth::Auth;
use tradeserve_features::live::kafka::FeedState;
use tradeserve_models::remote::backends::RemoteBackends;
use tradeserve_models::remote::steward::{Routed, Steward};

/// Why the service does not take decisions now (readiness, `/api/v1/stats`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("draining: the service is shutting down")]
    Draining,
    #[error("models are not loaded")]
    NoModels,
    #[error("market data backfill in progress ({records} records read)")]
    Backfill { records: i64 },
    #[error("orders cannot be risk-checked: {0}")]
    Risk(Unhealthy),
    #[error("decisions cannot be recorded: {0}")]
    Events(Unhealthy),
}

/// How much of a body is read, and how long its client may take to send it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub bytes: usize,
    /// From the headers to the last byte of the body; longer is answered 408.
    pub timeout: Duration,
}

/// Everything a handler may touch.
pub struct AppState {
    pub pipeline: Pipeline,
    /// The champion, experiments and rollouts; [`ControlPlane::routing`] is the one atomic
    /// load per request (`None` until models are loaded: not ready).
    pub control: Arc<ControlPlane>,
    pub metrics: Metrics,
    /// Admission control: a permit per in-flight prediction; none left → 429 at once.
    pub admission: Semaphore,
    /// Request body size and read-time limits.
    pub body: BodyLimits,
    /// The same for `POST /api/v1/bars` (a batch of bars is larger than a decision request).
    pub bars_body: BodyLimits,
    /// Symbols the feature source serves (static for the embedded replay).
    pub symbols: Vec<SymbolCoverage>,
    /// The MLflow side of the model set, when models come from the registry.
    pub registry: Option<Arc<RegistryManager>>,
    /// Where decisions, failures and outcomes are credited to experiment and rollout arms.
    pub arms: Arc<ArmBook>,
    /// The remote model backends, when any role or version is served remotely.
    pub remote: Option<Arc<RemoteBackends>>,
    /// The live feature source (`features.source = "live"`): where posted bars go.
    pub live: Option<Arc<LiveFeatures>>,
    /// The live feed's Kafka consumer's progress (not ready until its backfill caught up).
    pub feed: Option<Arc<FeedState>>,
    /// What the TorchServe steward last learned (empty without TorchServe roles).
    pub steward: Arc<Steward>,
    /// The API keys (`None`: authentication off).
    pub auth: Option<Arc<Auth>>,
    /// The decision route's last minute (`telemetry.stats_window`), sampled every second (the
    /// dashboard's figures).
    pub window: Window,
    /// Whether decision events also go to Kafka (`events.sink` = kafka or both).
    pub kafka_sink: bool,
    /// Which responses get an access-log line.
    pub access_log: AccessLog,
    /// Operators needed to release a trading halt (`control.halt_release_approvals`).
    pub halt_release_approvals: u8,
    /// Symbols whose repeated-execution halt is being stored by this replica.
    pub latching: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Live inputs and decisions against the champion's training and backtest.
    pub drift: Arc<crate::drift::DriftMonitor>,
    draining: AtomicBool,
}

/// The pieces [`AppState::new`] assembles.
pub struct Parts {
    pub pipeline: Pipeline,
    pub control: ControlPlane,
    pub models: Option<Arc<ModelSet>>,
    pub registry: Option<Arc<RegistryManager>>,
    pub remote: Option<Arc<RemoteBackends>>,
    pub live: Option<Arc<LiveFeatures>>,
    pub feed: Option<Arc<FeedState>>,
    pub metrics: Metrics,
    pub max_in_flight: usize,
    pub body: BodyLimits,
    /// Largest `POST /api/v1/bars` body (its read time limit is `body`'s).
    pub bars_bytes: usize,
    pub arms: Arc<ArmBook>,
    pub auth: Option<Arc<Auth>>,
    pub kafka_sink: bool,
    pub access_log: AccessLog,
    /// How far back the stats window looks.
    pub stats_window: Duration,
    pub halt_release_approvals: u8,
    pub drift: Arc<crate::drift::DriftMonitor>,
}

impl AppState {
    pub fn new(p: Parts) -> AppState {
        let symbols = p.pipeline.feature_source().coverage();
        let state = AppState {
            pipeline: p.pipeline,
            control: Arc::new(p.control),
            metrics: p.metrics,
            admission: Semaphore::new(p.max_in_flight),
            body: p.body,
            bars_body: BodyLimits {
                bytes: p.bars_bytes,
                timeout: p.body.timeout,
            },
            symbols,
            registry: p.registry,
            arms: p.arms,
            remote: p.remote,
            live: p.live,
            feed: p.feed,
            steward: Arc::default(),
            auth: p.auth,
            window: Window::new(LATENCY_BUCKETS, p.stats_window),
            kafka_sink: p.kafka_sink,
            access_log: p.access_log,
            halt_release_approvals: p.halt_release_approvals,
            latching: parking_lot::Mutex::default(),
            drift: p.drift,
            draining: AtomicBool::new(false),
        };
        if let Some(m) = p.models {
            state.control.set_champion(m);
        }
        state.refresh_ready();
        state
    }

    /// Ready = models loaded, decisions can be recorded, and not draining.
    pub fn is_ready(&self) -> Result<(), NotReady> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(NotReady::Draining);
        }
        if self.control.routing().is_none() {
            return Err(NotReady::NoModels);
        }
        if let Some(feed) = &self.feed
            && !feed.caught_up.load(Ordering::SeqCst)
        {
            return Err(NotReady::Backfill {
                records: feed.records.load(Ordering::Relaxed),
            });
        }
        self.pipeline.risk_health().map_err(NotReady::Risk)?;
        self.pipeline.event_health().map_err(NotReady::Events)
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stop reporting ready (shutdown has begun).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.refresh_ready();
    }

    /// Swap in a new champion model set.
    pub fn set_models(&self, models: Arc<ModelSet>) {
        self.control.set_champion(models);
        self.refresh_ready();
    }

    /// Bring the `tradeserve_ready` gauge and the backends' circuit gauges up to date (also
    /// done before each scrape).
    pub fn refresh_ready(&self) {
        self.metrics.ready.set(i64::from(self.is_ready().is_ok()));
        if let Some(live) = &self.live {
            self.metrics.feed.refresh(live, self.feed.as_deref());
        }
        if let Some(set) = self.control.champion() {
            for m in set.models() {
                let open = m
                    .remote
                    .as_ref()
                    .is_some_and(|r| matches!(r.state(), BackendState::Open { .. }));
                self.metrics.backends.set_circuit(m.info.role, open);
            }
        }
    }

    /// The sets requests may be routed to now, for the TorchServe steward.
    pub fn routed(&self) -> Routed {
        let mut routed = Routed::default();
        if let Some(routing) = self.control.routing() {
            routed.champion = Some(Arc::clone(&routing.champion));
            if let Some(e) = &routing.experiment {
                routed.others.extend(e.sets.iter().cloned());
            }
            if let Some(r) = &routing.rollout {
                routed.others.push(Arc::clone(&r.candidate));
            }
        }
        if let Some(previous) = self.registry.as_ref().and_then(|r| r.previous.load_full()) {
            routed.others.push(previous);
        }
        routed
    }
}

impl crate::registry::Serving for AppState {
    fn champion(&self) -> Option<Arc<ModelSet>> {
        self.control.champion()
    }

    fn set_champion(&self, set: Arc<ModelSet>) {
        self.set_models(set);
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
