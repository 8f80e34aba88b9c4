//! Shared state of the running service, built once at start and read by every handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use tokio::sync::Semaphore;
use tradeserve_core::ModelSet;
use tradeserve_core::Pipeline;
use tradeserve_core::ports::SymbolCoverage;

use crate::metrics::Metrics;
use crate::registry::RegistryManager;

/// Everything a handler may touch.
pub struct AppState {
    pub pipeline: Pipeline,
    /// The active model set: one atomic load per request; `None` until loaded (not ready).
    pub models: ArcSwapOption<ModelSet>,
    pub metrics: Metrics,
    /// Admission control: a permit per in-flight prediction; none left → 429 at once.
    pub admission: Semaphore,
    pub body_limit: usize,
    /// Symbols the feature source serves (static for the embedded replay).
    pub symbols: Vec<SymbolCoverage>,
    /// The MLflow side of the model set, when models come from the registry.
    pub registry: Option<Arc<RegistryManager>>,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(
        pipeline: Pipeline,
        models: Option<Arc<ModelSet>>,
        registry: Option<Arc<RegistryManager>>,
        metrics: Metrics,
        max_in_flight: usize,
        body_limit: usize,
    ) -> AppState {
        let symbols = pipeline.feature_source().coverage();
        let state = AppState {
            pipeline,
            models: ArcSwapOption::new(models),
            metrics,
            admission: Semaphore::new(max_in_flight),
            body_limit,
            symbols,
            registry,
            draining: AtomicBool::new(false),
        };
        state.refresh_ready();
        state
    }

    /// Ready = models loaded and not draining.
    pub fn is_ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("draining: the service is shutting down");
        }
        if self.models.load().is_none() {
            return Err("models are not loaded");
        }
        Ok(())
    }

    /// Stop reporting ready (shutdown has begun).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.refresh_ready();
    }

    /// Swap in a new active model set.
    pub fn set_models(&self, models: Arc<ModelSet>) {
        self.models.store(Some(models));
        self.refresh_ready();
    }

    fn refresh_ready(&self) {
        self.metrics.ready.set(i64::from(self.is_ready().is_ok()));
    }
}
