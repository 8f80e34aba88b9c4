//! Background work of the control plane, owned by the service and aborted at shutdown: the
//! poller that picks up other replicas' changes and the gate evaluator of the active rollout.

use std::sync::Arc;
use std::time::Duration;

use crate::state::AppState;

/// Re-read the control store every `interval`; errors are logged once per outage.
pub async fn poll(state: Arc<AppState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match state.control.refresh().await {
            Ok(_) => {
                if failing {
                    tracing::info!(store = %state.control.describe_store(), "control store reachable again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, store = %state.control.describe_store(), "control store unreachable; serving the last known state");
                }
                failing = true;
            }
        }
    }
}

/// Evaluate the active rollout's gates every `interval`.
pub async fn gates(state: Arc<AppState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Some(report) = state.control.tick_gates().await {
            tracing::debug!(stage = ?report.stage, verdict = ?report.verdict, "rollout gate evaluated");
        }
    }
}
