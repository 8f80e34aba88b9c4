//! Outcomes of experiment and rollout decisions (the in-memory side of the
//! [`tradeserve_core::control::ArmRecorder`] port): the realized return of each decision that
//! opened a position (an approved BUY or SELL), credited to the arms it was measured in.
//!
//! Outcomes come from `POST /api/v1/outcomes` or, in the embedded default, are derived from the
//! replayed market data at decision time (next-bar return × direction). A bounded window of
//! recent decisions is remembered so a posted outcome finds its arms; each decision takes one
//! outcome. The window's lock is held for a map insert, never across an await.
//!
//! With a fleet store ([`OutcomeBook::shared`]) the decisions awaiting an outcome are also
//! queued for publishing (`tradeserve_core::ports::FleetOutcomes`); once published, a decision is
//! credited only after winning the fleet's claim ([`Posted::Claim`]), so a decision posted to
//! two replicas is credited once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tradeserve_core::arm_stats::UnitStats;
use tradeserve_core::control::{Credit, OutcomeError};
use tradeserve_core::experiment::Arm;
use tradeserve_core::rollout::Stage;
use tradeserve_core::routing::Route;
use tradeserve_core::types::Action;
use uuid::Uuid;

/// One arm a decision was measured in.
#[derive(Debug, Clone)]
pub struct TrackedArm {
    pub stats: Arc<UnitStats>,
    pub arm: Arm,
    pub credit: Credit,
    /// The rollout's stage (its measurements are per stage); `None` for an experiment.
    pub stage: Option<Stage>,
}

struct Tracked {
    arms: Vec<TrackedArm>,
    recorded: bool,
    /// Handed to the fleet's store: from then on it is credited through a claim.
    published: bool,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Uuid, Tracked>,
    order: VecDeque<Uuid>,
    /// Awaiting decisions not yet handed to the fleet's store (only when shared).
    pending: VecDeque<Uuid>,
}

/// Recent decisions that may still receive an outcome.
pub struct OutcomeBook {
    capacity: usize,
    /// Queue awaiting decisions for the fleet's store.
    shared: bool,
    inner: Mutex<Inner>,
}

/// What a posted outcome found.
#[derive(Debug)]
pub enum Posted {
    /// Credited here: the decision was never published, so no other replica can credit it.
    Credited(Vec<Credit>),
    /// Published: credit it ([`OutcomeBook::claimed`]) only after winning the fleet's claim.
    Claim(Vec<TrackedArm>),
}

fn tracked_arms(route: &Route) -> Vec<TrackedArm> {
    let stage = route.rollout.as_ref().map(|r| r.stage);
    route
        .arms()
        .map(|a| TrackedArm {
            stats: Arc::clone(a.stats),
            arm: a.arm,
            credit: Credit {
                kind: a.kind,
                id: a.id.to_string(),
                arm: a.arm,
            },
            stage: match a.kind {
                tradeserve_core::routing::UnitKind::Experiment => None,
                tradeserve_core::routing::UnitKind::Rollout => stage,
            },
        })
        .collect()
}

fn record(arms: &[TrackedArm], realized_return: f64) -> Vec<Credit> {
    arms.iter()
        .map(|a| {
            a.stats.arm(a.arm).record_outcome(realized_return);
            a.credit.clone()
        })
        .collect()
}

impl OutcomeBook {
    pub fn new(capacity: usize) -> OutcomeBook {
        OutcomeBook {
            capacity: capacity.max(1),
            shared: false,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Queue the decisions awaiting an outcome for the fleet's store.
    pub fn shared(mut self) -> OutcomeBook {
        self.shared = true;
        self
    }

    /// A decision was returned. Only approved BUY/SELL decisions in an arm have outcomes;
    /// `derived` (the next-bar return, unsigned) records one at once.
    pub fn track(
        &self,
        decision_id: Uuid,
        route: &Route,
        action: Action,
        approved: bool,
        derived: Option<f64>,
    ) {
        if action == Action::Hold
            || !approved
            || (route.experiment.is_none() && route.rollout.is_none())
        {
            return;
        }
        let arms = tracked_arms(route);
        let recorded = match derived {
            Some(r) => {
                record(&arms, r * action.direction() as f64);
                true
            }
            None => false,
        };
        let mut inner = self.inner.lock();
        if inner.map.len() >= self.capacity
            && let Some(old) = inner.order.pop_front()
        {
            inner.map.remove(&old);
        }
        inner.map.insert(
            decision_id,
            Tracked {
                arms,
                recorded,
                published: false,
            },
        );
        inner.order.push_back(decision_id);
        if self.shared && !recorded {
            if inner.pending.len() >= self.capacity {
                inner.pending.pop_front();
            }
            inner.pending.push_back(decision_id);
        }
    }

    /// A posted outcome: `realized_return` of the position the decision opened.
    pub fn post(&self, decision_id: Uuid, realized_return: f64) -> Result<Posted, OutcomeError> {
        let arms = {
            let mut inner = self.inner.lock();
            let tracked = inner
                .map
                .get_mut(&decision_id)
                .ok_or(OutcomeError::Unknown(decision_id))?;
            if tracked.recorded {
                return Err(OutcomeError::AlreadyRecorded(decision_id));
            }
            if tracked.published {
                return Ok(Posted::Claim(tracked.arms.clone()));
            }
            tracked.recorded = true;
            tracked.arms.clone()
        };
        Ok(Posted::Credited(record(&arms, realized_return)))
    }

    /// This replica won the fleet's claim on a published decision: credit it.
    pub fn claimed(
        &self,
        decision_id: Uuid,
        arms: &[TrackedArm],
        realized_return: f64,
    ) -> Vec<Credit> {
        if let Some(t) = self.inner.lock().map.get_mut(&decision_id) {
            t.recorded = true;
        }
        record(arms, realized_return)
    }

    /// The awaiting decisions not handed to the fleet's store yet; from now on they are
    /// credited through a claim.
    pub fn take_unpublished(&self) -> Vec<(Uuid, Vec<TrackedArm>)> {
        let mut inner = self.inner.lock();
        let pending = std::mem::take(&mut inner.pending);
        pending
            .into_iter()
            .filter_map(|id| {
                let t = inner.map.get_mut(&id)?;
                if t.recorded {
                    return None;
                }
                t.published = true;
                Some((id, t.arms.clone()))
            })
            .collect()
    }

    /// Their publish failed: try again next time. They stay marked published (the store may
    /// hold them even so), so they are still credited only through a claim.
    pub fn requeue(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut inner = self.inner.lock();
        for id in ids {
            if inner.pending.len() >= self.capacity {
                break;
            }
            inner.pending.push_back(id);
        }
    }
}
