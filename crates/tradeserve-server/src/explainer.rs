//! Explanations (`explain: true`) off the async workers, on a small pool of dedicated threads
//! under `SCHED_IDLE`: an explanation costs a few milliseconds of CPU, and plain decisions must
//! keep their cores. At nice 19 a running explanation still delayed plain requests by up to a
//! scheduler slice (client p95 0.18 → 2.0 ms with 100 explanations/s beside 2,000 decisions/s);
//! under `SCHED_IDLE` it is preempted at once (0.18 → 0.19 ms; BENCHMARKS.md). At most
//! `explain.max_in_flight` run or wait at once; a request beyond that is answered 429
//! (`explain_overloaded`) at once, before its risk check, rather than queueing.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tradeserve_core::PredictError;
use tradeserve_core::explain::{self, ExplainConfig, Explanation};
use tradeserve_core::ports::{BoxFuture, ExplainJob, Explainer};

type Reply = oneshot::Sender<Result<Explanation, PredictError>>;

struct Task {
    job: ExplainJob,
    reply: Reply,
    _permit: OwnedSemaphorePermit,
}

/// See the module docs. The threads end when the explainer is dropped.
pub struct BlockingExplainer {
    permits: Arc<Semaphore>,
    tx: Mutex<Sender<Task>>,
}

impl BlockingExplainer {
    /// Start `config.max_in_flight` explanation threads.
    pub fn new(config: ExplainConfig) -> std::io::Result<BlockingExplainer> {
        let (tx, rx) = channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = config.max_in_flight.max(1);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("explain-{i}"))
                .spawn(move || {
                    crate::idle::enter("explain");
                    work(&rx, &config);
                })?;
        }
        Ok(BlockingExplainer {
            permits: Arc::new(Semaphore::new(threads)),
            tx: Mutex::new(tx),
        })
    }
}

fn work(rx: &Mutex<Receiver<Task>>, config: &ExplainConfig) {
    loop {
        // The lock is held only while taking one task off the queue.
        let task = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(t) => t,
            Err(_) => return,
        };
        let Task {
            job,
            reply,
            _permit: permit,
        } = task;
        let result = explain::explain(
            &job.models,
            &job.snapshot,
            job.strategy_override,
            job.action,
            config,
        );
        // Free the slot before answering: the caller may ask again as soon as it hears back.
        drop(permit);
        // The request may have gone (client closed): nothing to tell.
        let _ = reply.send(result);
    }
}

impl Explainer for BlockingExplainer {
    fn explain(&self, job: ExplainJob) -> BoxFuture<'_, Result<Explanation, PredictError>> {
        Box::pin(async move {
            let permit = Arc::clone(&self.permits)
                .try_acquire_owned()
                .map_err(|_| PredictError::ExplainOverloaded)?;
            let (reply, answer) = oneshot::channel();
            let task = Task {
                job,
                reply,
                _permit: permit,
            };
            self.tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(task)
                .map_err(|_| PredictError::Explain("explanation threads stopped".into()))?;
            answer
                .await
                .map_err(|_| PredictError::Explain("explanation thread failed".into()))?
        })
    }
}
