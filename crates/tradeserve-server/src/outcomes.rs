//! Outcomes of experiment and rollout decisions (the in-memory side of the
//! [`tradeserve_core::control::ArmRecorder`] port): the realized return of each decision that
//! opened a position (an approved BUY or SELL), credited to the arms it was measured in.
//!
//! Outcomes come from `POST /api/v1/outcomes` or, in the embedded default, are derived from the
//! replayed market data at decision time (next-bar return × direction). A bounded window of
//! recent decisions is remembered so a posted outcome finds its arms; each decision takes one
//! outcome. The window's lock is held for a map insert, never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tradeserve_core::arm_stats::UnitStats;
use tradeserve_core::control::{Credit, OutcomeError};
use tradeserve_core::experiment::Arm;
use tradeserve_core::routing::Route;
use tradeserve_core::types::Action;
use uuid::Uuid;

struct Tracked {
    arms: Vec<(Arc<UnitStats>, Arm, Credit)>,
    recorded: bool,
}

/// Recent decisions that may still receive an outcome.
pub struct OutcomeBook {
    capacity: usize,
    inner: Mutex<(HashMap<Uuid, Tracked>, VecDeque<Uuid>)>,
}

fn credits(route: &Route) -> Vec<(Arc<UnitStats>, Arm, Credit)> {
    route
        .arms()
        .map(|a| {
            let credit = Credit {
                kind: a.kind,
                id: a.id.to_string(),
                arm: a.arm,
            };
            (Arc::clone(a.stats), a.arm, credit)
        })
        .collect()
}

impl OutcomeBook {
    pub fn new(capacity: usize) -> OutcomeBook {
        OutcomeBook {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
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
        let arms = credits(route);
        let recorded = match derived {
            Some(r) => {
                let signed = r * action.direction() as f64;
                for (stats, arm, _) in &arms {
                    stats.arm(*arm).record_outcome(signed);
                }
                true
            }
            None => false,
        };
        let mut inner = self.inner.lock();
        let (map, order) = &mut *inner;
        if map.len() >= self.capacity
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
        map.insert(decision_id, Tracked { arms, recorded });
        order.push_back(decision_id);
    }

    /// A posted outcome: `realized_return` of the position the decision opened.
    pub fn post(
        &self,
        decision_id: Uuid,
        realized_return: f64,
    ) -> Result<Vec<Credit>, OutcomeError> {
        let arms = {
            let mut inner = self.inner.lock();
            let tracked = inner
                .0
                .get_mut(&decision_id)
                .ok_or(OutcomeError::Unknown(decision_id))?;
            if tracked.recorded {
                return Err(OutcomeError::AlreadyRecorded(decision_id));
            }
            tracked.recorded = true;
            tracked
                .arms
                .iter()
                .map(|(s, a, c)| (Arc::clone(s), *a, c.clone()))
                .collect::<Vec<_>>()
        };
        Ok(arms
            .into_iter()
            .map(|(stats, arm, credit)| {
                stats.arm(arm).record_outcome(realized_return);
                credit
            })
            .collect())
    }
}
