//! Shadow runs: a rollout's candidate re-decides each shadowed request on its own thread, off
//! the request path, at idle CPU priority, and records a `shadow_result` event (the decision's
//! own event was recorded before it was answered). The queue is bounded; when it is full the
//! job is shed (counted), so shadowing can never slow or block a request. At shutdown the
//! queue is drained.
//!
//! A candidate whose roles are served remotely runs on its backends (the calls a promoted
//! candidate would make, within `server.request_deadline` each), through the runtime the pool
//! was started in; without one, its in-process copies answer.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use parking_lot::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tradeserve_core::arm_stats::Observation;
use tradeserve_core::control::{ArmRecorder, ShadowRun};
use tradeserve_core::decision::{SHADOW_SCHEMA_VERSION, ShadowEvent, ShadowResult};
use tradeserve_core::pipeline::{Fetched, PredictError, Sized, kernel_with};
use tradeserve_core::ports::{EventSink, ShadowJob, ShadowRunner};
use tradeserve_core::remote::{Fallback, fetch};
use tradeserve_core::sizing::SizingPolicy;

use crate::metrics::ControlMetrics;

/// How shadow runs are made.
#[derive(Debug, Clone)]
pub struct ShadowConfig {
    /// Jobs waiting at most; more are shed.
    pub capacity: usize,
    pub sizing: SizingPolicy,
    /// Each remote call's time limit (the service's request deadline).
    pub remote_deadline: Duration,
    /// What a remote role's failure does, as on the request path.
    pub fallback: Fallback,
}

/// The shadow thread and its queue.
pub struct ShadowPool {
    tx: Mutex<Option<SyncSender<ShadowJob>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    metrics: ControlMetrics,
}

impl ShadowPool {
    /// Start the shadow thread: it runs each job's candidate, credits the run to the
    /// candidate's arm through `arms` and emits the `shadow_result` event to `events`.
    pub fn start(
        config: ShadowConfig,
        events: Arc<dyn EventSink>,
        arms: Arc<dyn ArmRecorder>,
        metrics: ControlMetrics,
    ) -> std::io::Result<ShadowPool> {
        let (tx, rx) = sync_channel(config.capacity.max(1));
        let worker = Worker {
            sizing: config.sizing,
            events,
            arms,
            remote: Handle::try_current().ok().map(|runtime| RemoteCalls {
                runtime,
                deadline: config.remote_deadline,
                fallback: config.fallback,
            }),
        };
        let worker = std::thread::Builder::new()
            .name("shadow".into())
            .spawn(move || {
                crate::idle::enter("shadow");
                worker.run(rx)
            })?;
        Ok(ShadowPool {
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            metrics,
        })
    }

    /// Stop taking jobs, finish the queued ones (emitting their events), join the thread.
    pub fn shutdown(&self) {
        drop(self.tx.lock().take());
        if let Some(w) = self.worker.lock().take()
            && w.join().is_err()
        {
            tracing::error!("shadow thread panicked");
        }
    }
}

impl ShadowRunner for ShadowPool {
    fn submit(&self, job: ShadowJob) -> Result<(), ShadowJob> {
        let guard = self.tx.lock();
        let Some(tx) = guard.as_ref() else {
            return Err(job);
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                self.metrics.shadow_shed.inc();
                Err(job)
            }
        }
    }
}

/// Wait between drains of the queue. Draining in batches means one wake-up per interval
/// instead of one per request: the request path's `try_send` finds the thread asleep (no
/// futex wake), and the shadow thread takes a core ~200 times a second, not 2,000.
const BATCH_INTERVAL: Duration = Duration::from_millis(5);

/// What the shadow thread runs with.
struct Worker {
    sizing: SizingPolicy,
    events: Arc<dyn EventSink>,
    arms: Arc<dyn ArmRecorder>,
    /// How remote roles are called (`None`: no runtime, in-process copies).
    remote: Option<RemoteCalls>,
}

/// The runtime remote calls run on, each call's deadline and what a failure does.
struct RemoteCalls {
    runtime: Handle,
    deadline: Duration,
    fallback: Fallback,
}

impl RemoteCalls {
    /// The candidate's remote roles' outputs for `job`.
    fn fetch(&self, job: &ShadowJob) -> Result<Fetched, PredictError> {
        self.runtime.block_on(fetch(
            &job.candidate,
            &job.snapshot,
            job.strategy_override,
            Instant::now() + self.deadline,
            self.fallback,
        ))
    }
}

impl Worker {
    fn run(&self, rx: Receiver<ShadowJob>) {
        // Blocks for the first job of a batch; ends when the pool is shut down and drained.
        while let Ok(first) = rx.recv() {
            self.shadow_one(first);
            while let Ok(job) = rx.try_recv() {
                self.shadow_one(job);
            }
            std::thread::sleep(BATCH_INTERVAL);
        }
    }

    fn shadow_one(&self, job: ShadowJob) {
        let shadow = run_candidate(&job, self);
        let ShadowJob {
            decision_id,
            symbol,
            action,
            rollout,
            ..
        } = job;
        let event = ShadowEvent {
            schema_version: SHADOW_SCHEMA_VERSION,
            event_type: "shadow_result",
            timestamp: time::OffsetDateTime::now_utc(),
            decision_id,
            symbol,
            action,
            rollout,
            shadow,
        };
        // The sink counts and logs what it cannot take.
        let _ = self.events.emit(event.into());
    }
}

/// Re-decide the job on its candidate (its remote roles on their backends), credit the
/// candidate arm, and say how it compares.
fn run_candidate(job: &ShadowJob, worker: &Worker) -> ShadowResult {
    let (sizing, arms) = (&worker.sizing, worker.arms.as_ref());
    let started = Instant::now();
    let fetched = match &worker.remote {
        Some(remote) if job.candidate.has_remote() => remote.fetch(job),
        _ => Ok(Fetched::NONE),
    };
    let result = fetched.and_then(|fetched| {
        kernel_with(
            &job.candidate,
            &job.snapshot,
            job.strategy_override,
            sizing,
            &fetched,
        )
    });
    let inference_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let model_versions = Arc::clone(job.candidate.versions());
    match result {
        Ok(Sized { eval, quantity }) => {
            let agreed = eval.action == job.action;
            let observation = Observation {
                action: eval.action,
                confidence: eval.confidence,
                approved: None,
                latency_us: None,
                inference_us,
            };
            arms.shadowed(
                &job.stats,
                ShadowRun::Decided {
                    observation: &observation,
                    agreed,
                },
            );
            ShadowResult {
                action: Some(eval.action),
                confidence: Some(eval.confidence),
                quantity: Some(quantity),
                agreed,
                model_versions,
                inference_us,
                error: None,
            }
        }
        Err(e) => {
            arms.shadowed(&job.stats, ShadowRun::Failed);
            ShadowResult {
                action: None,
                confidence: None,
                quantity: None,
                agreed: false,
                model_versions,
                inference_us,
                error: Some(e.to_string()),
            }
        }
    }
}
