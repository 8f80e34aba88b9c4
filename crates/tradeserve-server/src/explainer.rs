//! Explanations (`explain: true`) off the async workers, on a small pool of dedicated threads
//! under `SCHED_IDLE`: an explanation costs a few milliseconds of CPU, and plain decisions must
//! keep their cores. At nice 19 a running explanation still delayed plain requests by up to a
//! scheduler slice (client p95 0.18 → 2.0 ms with 100 explanations/s beside 2,000 decisions/s);
//! under `SCHED_IDLE` it is preempted at once (0.18 → 0.19 ms; BENCHMARKS.md). At most
//! `explain.max_in_flight` run or wait at once; a request beyond that is answered 429
//! (`explain_overloaded`) at once, before its risk check, rather than queueing.
//!
//! A role served by a remote backend gets all of an explanation's coalitions as one batched
//! call (a `[n, width]` tensor, or `n` instances), within the request's deadline; with
//! `models.remote.fallback = "in_process"` a failed call is answered by the in-process copy.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use parking_lot::Mutex;

use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tradeserve_core::PredictError;
use tradeserve_core::error::ModelError;
use tradeserve_core::explain::{
    self, BatchRunner, ExplainConfig, Explanation, InProcess, Question,
};
use tradeserve_core::model_set::LoadedModel;
use tradeserve_core::ports::{BoxFuture, ExplainJob, Explainer};
use tradeserve_core::remote::Fallback;

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
    /// Start `config.max_in_flight` explanation threads. Remote roles are called through
    /// the runtime this is built in (without one, their in-process copies answer).
    pub fn new(config: ExplainConfig) -> std::io::Result<BlockingExplainer> {
        let runtime = Handle::try_current().ok();
        let (tx, rx) = channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = config.max_in_flight.get();
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name(format!("explain-{i}"))
                .spawn(move || {
                    crate::idle::enter("explain");
                    work(&rx, &config, runtime.as_ref());
                })?;
        }
        Ok(BlockingExplainer {
            permits: Arc::new(Semaphore::new(threads)),
            tx: Mutex::new(tx),
        })
    }
}

/// Batches of remote roles through their backends (one call per model), the others in
/// process.
struct Remote<'a> {
    runtime: &'a Handle,
    deadline: std::time::Instant,
    fallback: Fallback,
}

impl BatchRunner for Remote<'_> {
    fn run(
        &self,
        model: &LoadedModel,
        rows: &[f32],
        width: usize,
    ) -> Result<Vec<[f32; 3]>, ModelError> {
        let Some(remote) = &model.remote else {
            return InProcess.run(model, rows, width);
        };
        let answer = self
            .runtime
            .block_on(remote.infer_rows(rows.to_vec(), width, self.deadline));
        match answer {
            Err(ModelError::Unavailable(_) | ModelError::Deadline)
                if self.fallback == Fallback::InProcess =>
            {
                InProcess.run(model, rows, width)
            }
            other => other,
        }
    }
}

fn work(rx: &Mutex<Receiver<Task>>, config: &ExplainConfig, runtime: Option<&Handle>) {
    loop {
        // The lock is held only while taking one task off the queue.
        let task = match rx.lock().recv() {
            Ok(t) => t,
            Err(_) => return,
        };
        let Task {
            job,
            reply,
            _permit: permit,
        } = task;
        let q = Question {
            models: &job.models,
            snapshot: &job.snapshot,
            strategy_override: job.strategy_override,
            action: job.action,
        };
        let result = match runtime {
            Some(runtime) if job.models.has_remote() => {
                let remote = Remote {
                    runtime,
                    deadline: job.deadline,
                    fallback: job.fallback,
                };
                explain::explain_with(&q, config, &remote)
            }
            _ => explain::explain_with(&q, config, &InProcess),
        };
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
                .send(task)
                .map_err(|_| PredictError::Explain("explanation threads stopped".into()))?;
            answer
                .await
                .map_err(|_| PredictError::Explain("explanation thread failed".into()))?
        })
    }
}
