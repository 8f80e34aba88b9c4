//! The service's [`ArmRecorder`]: credits every answered decision, failure and shadow run to
//! the arms it was measured in (the in-memory [`UnitStats`] the reports and gates read, and
//! the `tradeserve_arm_decisions_total` / `tradeserve_shadow_runs_total` counters), and keeps
//! the [`OutcomeBook`] of decisions awaiting their outcome. With `control.derive_outcomes` the
//! outcome is derived at once from the feature source (next-bar return × direction).
//!
//! Called on the request path once per answer: a few uncontended locks, no I/O, no await.

use std::sync::Arc;

use tradeserve_core::arm_stats::{Observation, UnitStats};
use tradeserve_core::control::{ArmRecorder, Credit, OutcomeError, ShadowRun};
use tradeserve_core::experiment::Arm;
use tradeserve_core::pipeline::Prediction;
use tradeserve_core::ports::FeatureSource;
use tradeserve_core::routing::Route;
use tradeserve_core::types::Action;
use uuid::Uuid;

use crate::metrics::ControlMetrics;
use crate::outcomes::OutcomeBook;

/// See the module docs.
pub struct ArmBook {
    metrics: ControlMetrics,
    outcomes: OutcomeBook,
    /// Where outcomes are derived from at decision time (`None`: they are posted).
    derive_from: Option<Arc<dyn FeatureSource>>,
}

impl ArmBook {
    /// `window`: how many recent decisions may still take an outcome.
    pub fn new(
        metrics: ControlMetrics,
        window: usize,
        derive_from: Option<Arc<dyn FeatureSource>>,
    ) -> ArmBook {
        ArmBook {
            metrics,
            outcomes: OutcomeBook::new(window),
            derive_from,
        }
    }
}

impl ArmRecorder for ArmBook {
    fn decided(&self, p: &Prediction) {
        let route = &p.route;
        if route.experiment.is_none() && route.rollout.is_none() {
            return;
        }
        let d = p.outcome.decision();
        let approved = d.risk_validation.as_ref().map(|v| v.approved);
        let obs = Observation {
            action: d.action,
            confidence: d.confidence,
            approved,
            latency_us: Some((d.metadata.latency_ms * 1e3) as u64),
            inference_us: u64::try_from(p.timings.inference.as_micros()).unwrap_or(u64::MAX),
        };
        for a in route.arms() {
            a.stats.arm(a.arm).record(&obs);
            self.metrics.arm_decided(a.kind, a.arm);
        }
        let derived = match &self.derive_from {
            Some(source) if d.action != Action::Hold => {
                source.next_bar_return(d.symbol.as_str(), p.snapshot.as_of)
            }
            _ => None,
        };
        self.outcomes.track(
            d.decision_id,
            route,
            d.action,
            approved.unwrap_or(true),
            derived,
        );
    }

    fn failed(&self, route: &Route) {
        for a in route.arms() {
            a.stats.arm(a.arm).record_error();
        }
    }

    fn shadowed(&self, candidate: &UnitStats, run: ShadowRun<'_>) {
        let arm = candidate.arm(Arm::Treatment);
        match run {
            ShadowRun::Decided {
                observation,
                agreed,
            } => {
                arm.record(observation);
                arm.record_shadow_agreement(agreed);
                match agreed {
                    true => self.metrics.shadow_agreed.inc(),
                    false => self.metrics.shadow_disagreed.inc(),
                }
            }
            ShadowRun::Failed => {
                arm.record_error();
                self.metrics.shadow_errors.inc();
            }
        }
    }

    fn outcome(
        &self,
        decision_id: Uuid,
        realized_return: f64,
    ) -> Result<Vec<Credit>, OutcomeError> {
        self.outcomes.post(decision_id, realized_return)
    }
}
