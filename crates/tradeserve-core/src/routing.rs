//! The routing snapshot: the champion model set plus the running experiment and rollout, with
//! every model set they need already loaded. One immutable value, swapped atomically by the
//! control plane; a request loads it once and [`Routing::route`] picks its model set, so no
//! decision ever mixes two snapshots.
//!
//! Precedence: a unit the rollout sends to its candidate is not in the experiment (the
//! candidate replaces every role); every other unit is assigned by the experiment, if any.

use crate::halt::ActiveHalts;
use std::sync::Arc;

use serde::Serialize;

use crate::arm_stats::UnitStats;
use crate::experiment::{self, Arm, Bucketing, Unit};
use crate::model_set::ModelSet;
use crate::rollout::Stage;

/// What a decision is measured in: the running experiment or the active rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    Experiment,
    Rollout,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Experiment => "experiment",
            UnitKind::Rollout => "rollout",
        }
    }
}

/// One arm a decision is measured in.
#[derive(Debug, Clone, Copy)]
pub struct ArmRef<'a> {
    pub kind: UnitKind,
    pub id: &'a Arc<str>,
    pub arm: Arm,
    pub stats: &'a Arc<UnitStats>,
}

/// The running experiment, ready to route.
#[derive(Debug, Clone)]
pub struct ExperimentRoute {
    pub id: Arc<str>,
    pub salt: Arc<str>,
    pub bucketing: Bucketing,
    pub split: f64,
    /// Indexed by [`Arm::index`]: the champion with the experiment's role at the control and
    /// at the treatment version.
    pub sets: [Arc<ModelSet>; 2],
    pub stats: Arc<UnitStats>,
}

/// The active rollout, ready to route.
#[derive(Debug, Clone)]
pub struct RolloutRoute {
    pub id: Arc<str>,
    pub stage: Stage,
    pub salt: Arc<str>,
    pub bucketing: Bucketing,
    pub candidate: Arc<ModelSet>,
    /// Measurements of the current stage.
    pub stats: Arc<UnitStats>,
}

/// What serves: one value per control-plane revision.
#[derive(Debug, Clone)]
pub struct Routing {
    pub champion: Arc<ModelSet>,
    pub experiment: Option<ExperimentRoute>,
    pub rollout: Option<RolloutRoute>,
    /// The trading halts in force: an order they cover fails `kill_switch`.
    pub halts: Arc<ActiveHalts>,
}

/// A decision's experiment arm.
#[derive(Debug, Clone)]
pub struct ExperimentTag {
    pub id: Arc<str>,
    pub arm: Arm,
    pub bucket: u32,
    pub stats: Arc<UnitStats>,
}

/// A decision's rollout arm (control or candidate).
#[derive(Debug, Clone)]
pub struct RolloutTag {
    pub id: Arc<str>,
    pub stage: Stage,
    pub arm: Arm,
    pub bucket: u32,
    pub stats: Arc<UnitStats>,
}

/// Where one decision goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub models: Arc<ModelSet>,
    pub experiment: Option<ExperimentTag>,
    pub rollout: Option<RolloutTag>,
    /// In shadow stage: the candidate to run after the response.
    pub shadow: Option<Arc<ModelSet>>,
}

impl Route {
    /// The arms this decision is measured in (none, one or two).
    pub fn arms(&self) -> impl Iterator<Item = ArmRef<'_>> {
        let e = self.experiment.as_ref().map(|t| ArmRef {
            kind: UnitKind::Experiment,
            id: &t.id,
            arm: t.arm,
            stats: &t.stats,
        });
        let r = self.rollout.as_ref().map(|t| ArmRef {
            kind: UnitKind::Rollout,
            id: &t.id,
            arm: t.arm,
            stats: &t.stats,
        });
        e.into_iter().chain(r)
    }
}

/// `experiment` of an event: id, arm and bucket.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ExperimentRef {
    pub id: String,
    pub arm: Arm,
    pub bucket: u32,
}

/// `rollout` of an event and a response: id, stage, arm and bucket.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutRef {
    pub id: String,
    pub stage: Stage,
    pub arm: Arm,
    pub bucket: u32,
}

impl ExperimentTag {
    pub fn to_ref(&self) -> ExperimentRef {
        ExperimentRef {
            id: self.id.to_string(),
            arm: self.arm,
            bucket: self.bucket,
        }
    }
}

impl RolloutTag {
    pub fn to_ref(&self) -> RolloutRef {
        RolloutRef {
            id: self.id.to_string(),
            stage: self.stage,
            arm: self.arm,
            bucket: self.bucket,
        }
    }
}

impl Routing {
    /// Only the champion: no experiment, no rollout.
    pub fn champion(models: Arc<ModelSet>) -> Routing {
        Routing {
            champion: models,
            experiment: None,
            rollout: None,
            halts: Arc::default(),
        }
    }

    /// Pick the model set of one unit.
    pub fn route(&self, unit: &Unit<'_>) -> Route {
        let mut route = Route {
            models: Arc::clone(&self.champion),
            experiment: None,
            rollout: None,
            shadow: None,
        };
        if let Some(r) = &self.rollout {
            let bucket = experiment::bucket(&r.salt, &unit.key(r.bucketing));
            let arm = experiment::arm_for(bucket, r.stage.candidate_share());
            route.rollout = Some(RolloutTag {
                id: Arc::clone(&r.id),
                stage: r.stage,
                arm,
                bucket,
                stats: Arc::clone(&r.stats),
            });
            if r.stage == Stage::Shadow {
                route.shadow = Some(Arc::clone(&r.candidate));
            }
            if arm == Arm::Treatment {
                route.models = Arc::clone(&r.candidate);
                return route;
            }
        }
        if let Some(e) = &self.experiment {
            let bucket = experiment::bucket(&e.salt, &unit.key(e.bucketing));
            let arm = experiment::arm_for(bucket, e.split);
            route.models = Arc::clone(&e.sets[arm.index()]);
            route.experiment = Some(ExperimentTag {
                id: Arc::clone(&e.id),
                arm,
                bucket,
                stats: Arc::clone(&e.stats),
            });
        }
        route
    }
}
