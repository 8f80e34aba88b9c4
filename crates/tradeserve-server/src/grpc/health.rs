//! The standard gRPC health service (`grpc.health.v1.Health`) kept in step with readiness:
//! SERVING while `/health/ready` would answer 200, NOT_SERVING otherwise — looked at every
//! half second, and set at once when the drain begins (before any connection is sent
//! GOAWAY), for the server (`""`) and each decision service.

use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::state::AppState;

/// The services whose status is reported.
const SERVICES: [&str; 3] = [
    "",
    "tradeserve.v1.Decisions",
    "inference.GRPCInferenceService",
];

/// How often readiness is looked at.
const POLL: Duration = Duration::from_millis(500);

/// The reporter and the task that keeps it current.
pub struct Health {
    reporter: HealthReporter,
    task: tokio::task::JoinHandle<()>,
}

impl Health {
    /// Start keeping `reporter` in step with `state`'s readiness.
    pub fn start(state: &Arc<AppState>, reporter: HealthReporter) -> Health {
        let (watched, report) = (Arc::clone(state), reporter.clone());
        let task = tokio::spawn(async move {
            let mut last = None;
            loop {
                let serving = match watched.is_ready() {
                    Ok(()) => ServingStatus::Serving,
                    Err(_) => ServingStatus::NotServing,
                };
                if last != Some(serving) {
                    set(&report, serving).await;
                    last = Some(serving);
                }
                tokio::time::sleep(POLL).await;
            }
        });
        Health { reporter, task }
    }

    /// The drain has begun: NOT_SERVING now (readiness no longer passes, so it stays).
    pub async fn draining(&self) {
        set(&self.reporter, ServingStatus::NotServing).await;
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn set(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}
