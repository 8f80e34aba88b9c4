//! The measurements reports and gates read: this replica's records of a unit merged with the
//! other replicas' published shares when there is a fleet store ([`tradeserve_core::ports::FleetShares`]),
//! and the publisher that sends this replica's share of every unit whose records changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tradeserve_core::arm_stats::UnitStats;
use tradeserve_core::rollout::Stage;

use super::ControlPlane;
use crate::control::units::{experiment_key, rollout_key};
use tradeserve_core::fleet::{self, Measured, Outgoing, Share, UnitKey};
use tradeserve_core::ports::FleetError;

/// The outcome sample of a unit is published at most this often (it is large, and only the
/// report's bootstrap reads it).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// An unchanged share is sent again this often: a Redis that lost its data (a restart
/// without persistence) gets every replica's share back within this time, and the keys of a
/// unit a running replica measured do not expire.
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// What was last published of one unit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Published {
    /// `ArmState::activity` of both arms.
    activity: u64,
    /// When the share was last sent.
    sent_at: Instant,
    /// Outcomes in the last published sample, and when it was sent.
    sample_outcomes: u64,
    sample_at: Instant,
}

impl ControlPlane {
    /// Whether measurements are shared with other replicas.
    pub fn has_fleet(&self) -> bool {
        self.measured.fleet.is_some()
    }

    /// This replica's id among the fleet's contributors.
    pub fn replica_id(&self) -> &str {
        self.measured
            .fleet
            .as_ref()
            .map_or("local", |f| f.replica())
    }

    fn local_share(&self, unit: &UnitKey) -> Option<Share> {
        let stats = self.measured.units.get(unit)?;
        Some(Share {
            replica: self.replica_id().to_owned(),
            since: self.measured.started,
            published_at: OffsetDateTime::now_utc(),
            arms: stats.states(),
        })
    }

    /// A unit's records over the fleet: this replica's live share and every other replica's
    /// last published one. Without a fleet store, or when it cannot be read (`error` says why),
    /// this replica's alone. `with_samples`: also the outcome samples (the report's bootstrap).
    pub async fn measured(&self, unit: &UnitKey, with_samples: bool) -> Measured {
        let local = self.local_share(unit);
        let Some(fleet) = &self.measured.fleet else {
            return fleet::merge(local, Vec::new());
        };
        match fleet.read(unit, with_samples).await {
            Ok(others) => Measured {
                fleet: true,
                ..fleet::merge(local, others)
            },
            Err(e) => Measured {
                error: Some(e.to_string()),
                ..fleet::merge(local, Vec::new())
            },
        }
    }

    pub async fn experiment_measured(&self, id: &str) -> Measured {
        self.measured(&experiment_key(id), true).await
    }

    pub async fn rollout_measured(&self, id: &str, stage: Stage) -> Measured {
        self.measured(&rollout_key(id, stage), false).await
    }

    /// Publish this replica's share of every unit whose records changed since its last
    /// publish; a changed outcome sample goes at most every [`SAMPLE_EVERY`] (always when
    /// `flush`, at shutdown). Returns how many units were sent. Without a fleet store: none.
    pub async fn publish_measurements(&self, flush: bool) -> Result<usize, FleetError> {
        let Some(fleet) = &self.measured.fleet else {
            return Ok(0);
        };
        let units: Vec<(UnitKey, Arc<UnitStats>)> = self.measured.units.all();
        let now = Instant::now();
        let mut outgoing = Vec::new();
        let mut marks = Vec::new();
        for (unit, stats) in units {
            // Whether to send is read without copying anything: every unit ever routed is
            // checked each interval, and most have not changed.
            let (activity, outcomes) = stats.progress();
            let last = self.measured.published.lock().get(&unit).copied();
            let sample_due = last.is_none_or(|p| {
                p.sample_outcomes != outcomes && (flush || now - p.sample_at >= SAMPLE_EVERY)
            });
            let fresh = last.is_some_and(|p| {
                p.activity == activity && now.duration_since(p.sent_at) < REFRESH_EVERY
            });
            if fresh && !sample_due {
                continue;
            }
            // Copied now, so possibly a few records past `activity`: the next interval
            // sends them again, never fewer.
            let arms = stats.states();
            marks.push((
                unit.clone(),
                Published {
                    activity,
                    sent_at: now,
                    sample_outcomes: if sample_due {
                        outcomes
                    } else {
                        last.map_or(0, |p| p.sample_outcomes)
                    },
                    sample_at: if sample_due {
                        now
                    } else {
                        last.map_or(now, |p| p.sample_at)
                    },
                },
            ));
            outgoing.push(Outgoing {
                unit,
                share: Share {
                    replica: fleet.replica().to_owned(),
                    since: self.measured.started,
                    published_at: OffsetDateTime::now_utc(),
                    arms,
                },
                with_sample: sample_due,
            });
        }
        let sent = outgoing.len();
        if sent > 0 {
            fleet.publish(outgoing).await?;
            self.measured.published.lock().extend(marks);
        }
        Ok(sent)
    }
}
