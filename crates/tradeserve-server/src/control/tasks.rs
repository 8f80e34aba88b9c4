//! Background work of the control plane, owned by the service and aborted at shutdown: the
//! poller that picks up other replicas' changes, the gate evaluator of the active rollout, and
//! the publisher of this replica's measurements to the fleet.

use std::sync::Arc;
use std::time::Duration;

use super::ControlPlane;
use crate::arms::ArmBook;

/// Re-read the control store every `interval`; errors are logged once per outage.
pub async fn poll(control: Arc<ControlPlane>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match control.refresh().await {
            Ok(_) => {
                if failing {
                    tracing::info!(store = %control.describe_store(), "control store reachable again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, store = %control.describe_store(), "control store unreachable; serving the last known state");
                }
                failing = true;
            }
        }
    }
}

/// Evaluate the active rollout's gates every `interval`.
pub async fn gates(control: Arc<ControlPlane>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Some(report) = control.tick_gates().await {
            tracing::debug!(stage = ?report.stage, verdict = ?report.verdict, "rollout gate evaluated");
        }
    }
}

/// Publish this replica's measurements every `interval` (nothing to do without a fleet store);
/// errors are logged once per outage, and what was not sent goes with the next publish.
pub async fn publish(control: Arc<ControlPlane>, arms: Arc<ArmBook>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        let sent = control.publish_measurements(false).await;
        let awaiting = arms.publish_awaiting().await;
        match sent.and(awaiting) {
            Ok(_) => {
                if failing {
                    tracing::info!("fleet measurements published again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "fleet measurements not published; reports and gates of other replicas miss this replica's share until they are");
                }
                failing = true;
            }
        }
    }
}
