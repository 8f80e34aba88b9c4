//! Explanations (`explain: true`) off the async workers: each runs on tokio's blocking pool,
//! at most `explain.max_in_flight` at once. A request beyond that is answered 429
//! (`explain_overloaded`) at once, before its risk check, rather than queueing: an explanation
//! costs a few milliseconds of CPU, and a queue of them would delay everyone.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tradeserve_core::PredictError;
use tradeserve_core::explain::{self, ExplainConfig, Explanation};
use tradeserve_core::ports::{BoxFuture, ExplainJob, Explainer};

/// See the module docs.
pub struct BlockingExplainer {
    permits: Arc<Semaphore>,
    config: ExplainConfig,
}

impl BlockingExplainer {
    pub fn new(config: ExplainConfig) -> BlockingExplainer {
        BlockingExplainer {
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
        }
    }
}

impl Explainer for BlockingExplainer {
    fn explain(&self, job: ExplainJob) -> BoxFuture<'_, Result<Explanation, PredictError>> {
        Box::pin(async move {
            let permit = Arc::clone(&self.permits)
                .try_acquire_owned()
                .map_err(|_| PredictError::ExplainOverloaded)?;
            let config = self.config;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                explain::explain(
                    &job.models,
                    &job.snapshot,
                    job.strategy_override,
                    job.action,
                    &config,
                )
            })
            .await
            .map_err(|e| PredictError::Explain(e.to_string()))?
        })
    }
}
