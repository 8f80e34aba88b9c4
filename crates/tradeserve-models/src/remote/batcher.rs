//! Micro-batching of concurrent decisions into one call per model: requests that need the
//! same remote model at the same time share one call (a `[n, width]` tensor, `n` instances,
//! `n` rows of data), so a model server answers one call where it would have answered `n`.
//!
//! Batches form on their own, without a timer: at most `in_flight` calls per model are on the
//! wire; a request arriving while they are busy waits in the queue, and the next call takes
//! everything queued (up to `max_rows`). At low load every request goes alone, at once (no
//! added latency); under load the batches grow with the queue. A batch's deadline is the
//! earliest of its requests'; its failure is each request's failure (and counts once per
//! request in the circuit breaker around it). Calls of several rows (explanations) and calls
//! while the batcher is saturated go straight through.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tradeserve_core::error::ModelError;
use tradeserve_core::model_set::{BackendInfo, BackendState, RemoteModel, RemoteRows};

/// How requests are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most rows in one call.
    pub max_rows: usize,
    /// Calls per model on the wire at once.
    pub in_flight: usize,
}

/// One request waiting for its batch.
struct Pending {
    row: Vec<f32>,
    deadline: Instant,
    reply: oneshot::Sender<Result<[f32; 3], ModelError>>,
}

/// See the module docs.
pub struct Batcher {
    inner: Arc<dyn RemoteModel>,
    queue: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Batch the one-row calls to `inner`; the batching task runs on the current Tokio
    /// runtime until the batcher is dropped.
    pub fn new(inner: Arc<dyn RemoteModel>, config: BatchConfig) -> Batcher {
        let (queue, rx) = mpsc::channel(config.max_rows.max(1) * config.in_flight.max(1) * 4);
        tokio::spawn(batch(Arc::clone(&inner), rx, config));
        Batcher { inner, queue }
    }
}

/// Take what is queued, one call per batch, at most `in_flight` at once.
async fn batch(inner: Arc<dyn RemoteModel>, mut rx: mpsc::Receiver<Pending>, config: BatchConfig) {
    let slots = Arc::new(Semaphore::new(config.in_flight.max(1)));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut members = vec![first];
        while members.len() < config.max_rows.max(1) {
            match rx.try_recv() {
                Ok(p) => members.push(p),
                Err(_) => break,
            }
        }
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            call(inner.as_ref(), members).await;
            drop(slot);
        });
    }
}

/// One call for `members`; each gets its row's answer (or the call's error).
async fn call(inner: &dyn RemoteModel, members: Vec<Pending>) {
    let width = members[0].row.len();
    let deadline = members.iter().map(|p| p.deadline).min();
    let Some(deadline) = deadline else {
        return;
    };
    let rows: Vec<f32> = members.iter().flat_map(|p| p.row.iter().copied()).collect();
    let answer = inner.infer_rows(rows, width, deadline).await;
    match answer {
        Ok(outputs) if outputs.len() == members.len() => {
            for (p, out) in members.into_iter().zip(outputs) {
                let _ = p.reply.send(Ok(out));
            }
        }
        Ok(outputs) => {
            let e = ModelError::BadOutput(outputs.iter().flatten().copied().collect());
            for p in members {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for p in members {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

impl RemoteModel for Batcher {
    fn infer_rows(&self, rows: Vec<f32>, width: usize, deadline: Instant) -> RemoteRows {
        if rows.len() != width {
            return self.inner.infer_rows(rows, width, deadline);
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            row: rows,
            deadline,
            reply,
        };
        match self.queue.try_send(pending) {
            Ok(()) => Box::pin(async move {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, answer).await {
                    Ok(Ok(result)) => result.map(|one| vec![one]),
                    Ok(Err(_)) => Err(ModelError::Unavailable("batcher stopped".into())),
                    Err(_) => Err(ModelError::Deadline),
                }
            }),
            Err(e) => {
                let p = e.into_inner();
                self.inner.infer_rows(p.row, width, deadline)
            }
        }
    }

    fn backend(&self) -> &BackendInfo {
        self.inner.backend()
    }

    fn state(&self) -> BackendState {
        self.inner.state()
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;
    use std::time::Duration;

    use super::*;

    /// Answers each row with `[x0, 0, 0]` after `delay`, recording each call's row count.
    struct Slow {
        delay: Duration,
        calls: Mutex<Vec<usize>>,
        info: BackendInfo,
    }

    impl RemoteModel for Slow {
        fn infer_rows(&self, rows: Vec<f32>, width: usize, _: Instant) -> RemoteRows {
            self.calls.lock().push(rows.len() / width);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(rows.chunks(width).map(|r| [r[0], 0.0, 0.0]).collect())
            })
        }

        fn backend(&self) -> &BackendInfo {
            &self.info
        }
    }

    fn slow(delay: Duration) -> Arc<Slow> {
        Arc::new(Slow {
            delay,
            calls: Mutex::new(Vec::new()),
            info: BackendInfo {
                kind: "test",
                endpoint: "test://".into(),
                model: "m".into(),
            },
        })
    }

    // On paused Tokio time: the clock moves only when every task waits on a timer, so the time
    // a request took is the timers it waited on (the model's delay, a deadline), whatever the
    // machine's speed.
    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_calls_and_each_gets_its_own_answer() {
        let inner = slow(Duration::from_millis(20));
        let batcher = Arc::new(Batcher::new(
            inner.clone(),
            BatchConfig {
                max_rows: 16,
                in_flight: 1,
            },
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let b = Arc::clone(&batcher);
                tokio::spawn(async move { b.infer(vec![i as f32, 1.0], deadline).await })
            })
            .collect();
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap(), [i as f32, 0.0, 0.0]);
        }
        let sizes = inner.calls.lock().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.iter().all(|n| *n <= 16), "{sizes:?}");
        assert!(sizes.len() < 40, "requests shared calls: {sizes:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn alone_a_request_goes_at_once_and_a_slow_batch_meets_its_deadline() {
        let inner = slow(Duration::from_millis(1));
        let batcher = Batcher::new(
            inner.clone(),
            BatchConfig {
                max_rows: 16,
                in_flight: 2,
            },
        );
        let started = tokio::time::Instant::now();
        let one = batcher
            .infer(vec![3.0], Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(one.unwrap(), [3.0, 0.0, 0.0]);
        // The model's 1 ms and no batching wait (the timer wheel rounds to the next ms).
        assert!(
            started.elapsed() <= Duration::from_millis(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(*inner.calls.lock(), vec![1]);

        let stuck = Batcher::new(
            slow(Duration::from_secs(5)),
            BatchConfig {
                max_rows: 16,
                in_flight: 1,
            },
        );
        let started = tokio::time::Instant::now();
        let late = stuck
            .infer(vec![1.0], Instant::now() + Duration::from_millis(50))
            .await;
        assert!(matches!(late, Err(ModelError::Deadline)), "{late:?}");
        // At the deadline, not at the model's 5 s.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}
