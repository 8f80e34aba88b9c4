//! The service's [`ArmRecorder`]: credits every answered decision, failure and shadow run to
//! the arms it was measured in (the in-memory [`UnitStats`] the reports and gates read, and
//! the `tradeserve_arm_decisions_total` / `tradeserve_shadow_runs_total` counters), and keeps
//! the [`OutcomeBook`] of decisions awaiting their outcome. With `control.derive_outcomes` the
//! outcome is derived at once from the feature source (next-bar return × direction).
//!
//! Called on the request path once per answer: a few uncontended locks, no I/O, no await. With
//! a fleet store, a posted outcome may await Redis (it may belong to a decision another replica
//! made, and is credited once fleet-wide: [`tradeserve_core::ports::FleetOutcomes`]).

use std::sync::Arc;

use tradeserve_core::arm_stats::{Observation, UnitStats};
use tradeserve_core::control::{ArmRecorder, Credit, OutcomeError, ShadowRun};
use tradeserve_core::experiment::Arm;
use tradeserve_core::pipeline::Prediction;
use tradeserve_core::ports::BoxFuture;
use tradeserve_core::ports::FeatureSource;
use tradeserve_core::routing::Route;
use tradeserve_core::routing::UnitKind;
use tradeserve_core::types::Action;
use uuid::Uuid;

use crate::control::units::{Units, experiment_key, rollout_key};
use crate::metrics::ControlMetrics;
use crate::outcomes::{OutcomeBook, Posted, TrackedArm};
use tradeserve_core::fleet::{Awaiting, AwaitingArm, UnitKey};
use tradeserve_core::ports::{FleetError, FleetOutcomes as FleetOutcomeStore};

/// See the module docs.
pub struct ArmBook {
    metrics: ControlMetrics,
    outcomes: OutcomeBook,
    /// Where outcomes are derived from at decision time (`None`: they are posted).
    derive_from: Option<Arc<dyn FeatureSource>>,
    /// Where posted outcomes meet across replicas (`None`: one replica).
    fleet: Option<FleetOutcomes>,
    /// Every decision's inputs and answer, for the drift monitor.
    drift: Option<Arc<crate::drift::DriftMonitor>>,
}

/// The fleet's store of awaiting decisions, and this replica's units to credit remote ones to.
struct FleetOutcomes {
    store: Arc<dyn FleetOutcomeStore>,
    units: Arc<Units>,
}

/// The unit key a tracked arm was measured in.
fn unit_of(a: &TrackedArm) -> Option<UnitKey> {
    match a.credit.kind {
        UnitKind::Experiment => Some(experiment_key(&a.credit.id)),
        UnitKind::Rollout => a.stage.map(|s| rollout_key(&a.credit.id, s)),
    }
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
            fleet: None,
            drift: None,
        }
    }

    /// Count every decision in `monitor`'s window too.
    pub fn with_drift(mut self, monitor: Arc<crate::drift::DriftMonitor>) -> ArmBook {
        self.drift = Some(monitor);
        self
    }

    /// Publish awaiting decisions to `store`, and credit outcomes posted here for other
    /// replicas' decisions to `units`.
    pub fn with_fleet(mut self, store: Arc<dyn FleetOutcomeStore>, units: Arc<Units>) -> ArmBook {
        self.outcomes = self.outcomes.shared();
        self.fleet = Some(FleetOutcomes { store, units });
        self
    }

    /// Hand the decisions awaiting an outcome to the fleet's store (run with the measurements'
    /// publish). Returns how many were sent; on failure they are sent next time.
    pub async fn publish_awaiting(&self) -> Result<usize, FleetError> {
        let Some(fleet) = &self.fleet else {
            return Ok(0);
        };
        let taken = self.outcomes.take_unpublished();
        let awaiting: Vec<Awaiting> = taken
            .iter()
            .map(|(id, arms)| Awaiting {
                decision_id: *id,
                arms: arms
                    .iter()
                    .filter_map(|a| {
                        Some(AwaitingArm {
                            unit: unit_of(a)?,
                            credit: a.credit.clone(),
                        })
                    })
                    .collect(),
            })
            .collect();
        match fleet.store.publish(&awaiting).await {
            Ok(()) => Ok(awaiting.len()),
            Err(e) => {
                self.outcomes.requeue(taken.into_iter().map(|(id, _)| id));
                Err(e)
            }
        }
    }

    /// An outcome posted here for a decision this replica does not know: another replica's,
    /// if the fleet's store has it. Credited to this replica's share of its units.
    async fn remote_outcome(
        &self,
        fleet: &FleetOutcomes,
        id: Uuid,
        realized_return: f64,
    ) -> Result<Vec<Credit>, OutcomeError> {
        let unavailable = |e: FleetError| OutcomeError::Unavailable(id, e.to_string());
        let arms = fleet
            .store
            .lookup(id)
            .await
            .map_err(unavailable)?
            .ok_or(OutcomeError::Unknown(id))?;
        if !fleet.store.claim(id).await.map_err(unavailable)? {
            return Err(OutcomeError::AlreadyRecorded(id));
        }
        Ok(arms
            .into_iter()
            .map(|a| {
                let stats = fleet.units.get_or_create(&a.unit);
                stats.arm(a.credit.arm).record_outcome(realized_return);
                a.credit
            })
            .collect())
    }

    async fn post_outcome(&self, id: Uuid, r: f64) -> Result<Vec<Credit>, OutcomeError> {
        let posted = match (self.outcomes.post(id, r), &self.fleet) {
            (Err(OutcomeError::Unknown(_)), Some(fleet)) => {
                return self.remote_outcome(fleet, id, r).await;
            }
            (posted, _) => posted?,
        };
        match (posted, &self.fleet) {
            (Posted::Credited(credits), _) => Ok(credits),
            (Posted::Claim(arms), Some(fleet)) => match fleet.store.claim(id).await {
                Ok(true) => Ok(self.outcomes.claimed(id, &arms, r)),
                Ok(false) => Err(OutcomeError::AlreadyRecorded(id)),
                Err(e) => Err(OutcomeError::Unavailable(id, e.to_string())),
            },
            // Only a shared book publishes, so this cannot happen; never credit twice.
            (Posted::Claim(_), None) => Err(OutcomeError::AlreadyRecorded(id)),
        }
    }
}

impl ArmRecorder for ArmBook {
    fn decided(&self, p: &Prediction) {
        let route = &p.route;
        let d = p.outcome.decision();
        let measured = route.experiment.is_some() || route.rollout.is_some();
        if !measured && self.drift.is_none() {
            return;
        }
        let derived = match &self.derive_from {
            Some(source) if d.action != Action::Hold => {
                source.next_bar_return(d.symbol.as_str(), p.snapshot.as_of)
            }
            _ => None,
        };
        if let Some(drift) = &self.drift {
            drift.observe(p, derived);
        }
        if !measured {
            return;
        }
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
    ) -> BoxFuture<'_, Result<Vec<Credit>, OutcomeError>> {
        Box::pin(self.post_outcome(decision_id, realized_return))
    }
}
