//! A circuit breaker around a remote model: after `failures` consecutive failed calls (refused,
//! error status, past the deadline) the circuit opens and calls fail at once, without touching
//! the network, for `open_for`; then one call is let through as a probe — its success closes
//! the circuit, its failure opens it again for twice as long (at most 16 × `open_for`). Opening
//! and closing are logged once each (a request failed by an open circuit is not logged: an
//! outage at thousands of requests a second would flood the log). Open periods run on the Tokio
//! clock, so tests pause it and step through them without sleeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The breaker's clock (Tokio's, which tests can pause).
type Clock = tokio::time::Instant;

use parking_lot::Mutex;
use tradeserve_core::error::ModelError;
use tradeserve_core::model_set::{BackendInfo, BackendState, RemoteModel, RemoteRows};

/// When the circuit opens and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    /// Open until this instant.
    open_until: Option<Clock>,
    /// How long the last opening lasted (doubles on a failed probe).
    open_for: Duration,
    /// A probe is in flight: other calls still fail fast.
    probing: bool,
}

/// See the module docs.
pub struct Breaker {
    inner: Arc<dyn RemoteModel>,
    config: BreakerConfig,
    state: Arc<Mutex<State>>,
}

impl Breaker {
    pub fn new(inner: Arc<dyn RemoteModel>, config: BreakerConfig) -> Breaker {
        Breaker {
            inner,
            config,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// `Some(why)` when this call must fail without being made; otherwise the call may go
    /// (and is the probe when the circuit was open).
    fn admit(&self, now: Clock) -> Option<String> {
        let mut s = self.state.lock();
        let until = s.open_until?;
        if now < until || s.probing {
            let wait = until.saturating_duration_since(now);
            return Some(format!(
                "circuit open after {} consecutive failures; next probe in {} ms",
                self.config.failures.max(1),
                wait.as_millis()
            ));
        }
        s.probing = true;
        None
    }
}

/// What a settled call did to the circuit (logged once per change, not per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    Opened,
    Closed,
}

fn settle(state: &Mutex<State>, config: &BreakerConfig, ok: bool) -> Change {
    let mut s = state.lock();
    let was_probe = std::mem::take(&mut s.probing);
    let was_open = s.open_until.is_some();
    if ok {
        *s = State::default();
        return if was_open {
            Change::Closed
        } else {
            Change::None
        };
    }
    s.consecutive = s.consecutive.saturating_add(1);
    if was_probe || (!was_open && s.consecutive >= config.failures.max(1)) {
        let base = config.open_for;
        s.open_for = match was_probe {
            true => (s.open_for * 2).min(base * 16).max(base),
            false => base,
        };
        s.open_until = Some(Clock::now() + s.open_for);
        if !was_open {
            return Change::Opened;
        }
    }
    Change::None
}

impl RemoteModel for Breaker {
    fn infer_rows(&self, rows: Vec<f32>, width: usize, deadline: Instant) -> RemoteRows {
        if let Some(why) = self.admit(Clock::now()) {
            return Box::pin(async move { Err(ModelError::Unavailable(why)) });
        }
        let call = self.inner.infer_rows(rows, width, deadline);
        let (state, config) = (Arc::clone(&self.state), self.config.clone());
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let result = call.await;
            let failed = matches!(
                result,
                Err(ModelError::Unavailable(_) | ModelError::Deadline)
            );
            let endpoint = || inner.backend().endpoint.clone();
            match settle(&state, &config, !failed) {
                Change::Opened => tracing::warn!(
                    endpoint = %endpoint(),
                    failures = config.failures,
                    error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                    "remote backend circuit opened: calls fail at once until a probe succeeds"
                ),
                Change::Closed => {
                    tracing::info!(endpoint = %endpoint(), "remote backend circuit closed")
                }
                Change::None => {}
            }
            result
        })
    }

    fn backend(&self) -> &BackendInfo {
        self.inner.backend()
    }

    fn state(&self) -> BackendState {
        let s = self.state.lock();
        match s.open_until {
            Some(_) => BackendState::Open {
                consecutive_failures: s.consecutive,
            },
            None => BackendState::Closed {
                consecutive_failures: s.consecutive,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;

    /// Fails while `down`, counting the calls that reached it.
    struct Flaky {
        down: AtomicBool,
        calls: AtomicU32,
        info: BackendInfo,
    }

    impl RemoteModel for Flaky {
        fn infer_rows(&self, _: Vec<f32>, _: usize, _: Instant) -> RemoteRows {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let down = self.down.load(Ordering::SeqCst);
            Box::pin(async move {
                match down {
                    true => Err(ModelError::Unavailable("refused".into())),
                    false => Ok(vec![[0.2, 0.3, 0.5]]),
                }
            })
        }

        fn backend(&self) -> &BackendInfo {
            &self.info
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_a_probe_closes_it() {
        let flaky = Arc::new(Flaky {
            down: AtomicBool::new(true),
            calls: AtomicU32::new(0),
            info: BackendInfo {
                kind: "test",
                endpoint: "test://".into(),
                model: "m".into(),
            },
        });
        let open_for = Duration::from_millis(100);
        let breaker = Breaker::new(
            flaky.clone(),
            BreakerConfig {
                failures: 3,
                open_for,
            },
        );
        let call = || breaker.infer(vec![0.0], Instant::now() + Duration::from_secs(1));
        for _ in 0..3 {
            assert!(call().await.is_err());
        }
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        assert!(matches!(
            breaker.state(),
            BackendState::Open {
                consecutive_failures: 3
            }
        ));
        // Open: refused without a call.
        match call().await {
            Err(ModelError::Unavailable(why)) => assert!(why.contains("circuit open"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        // A failed probe opens it again, for twice as long.
        tokio::time::sleep(open_for + Duration::from_millis(20)).await;
        assert!(call().await.is_err());
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        assert_eq!(breaker.state.lock().open_for, open_for * 2);
        assert!(call().await.is_err(), "open again: refused without a call");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        // The backend is back: the next probe closes the circuit.
        flaky.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(open_for * 2).await;
        assert_eq!(call().await, Ok([0.2, 0.3, 0.5]));
        assert!(matches!(
            breaker.state(),
            BackendState::Closed {
                consecutive_failures: 0
            }
        ));
        assert_eq!(call().await, Ok([0.2, 0.3, 0.5]));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn opening_and_closing_are_each_reported_once() {
        let state = Mutex::new(State::default());
        let config = BreakerConfig {
            failures: 2,
            open_for: Duration::from_secs(60),
        };
        assert_eq!(settle(&state, &config, false), Change::None);
        assert_eq!(settle(&state, &config, false), Change::Opened);
        let until = state.lock().open_until;
        // Calls that were in flight when it opened fail too: no second report, no new period.
        assert_eq!(settle(&state, &config, false), Change::None);
        assert_eq!(state.lock().open_until, until);
        assert_eq!(settle(&state, &config, true), Change::Closed);
        assert_eq!(settle(&state, &config, true), Change::None);
    }
}
