//! What the replicas of a fleet share about experiments and rollouts, as plain data: each
//! replica's records of a unit ([`Share`]), merged over the fleet with this replica's live one
//! ([`merge`]) for reports and gates, and the decisions awaiting an outcome ([`Awaiting`]), so an
//! outcome posted to any replica is credited once. Where they are kept is a port
//! ([`crate::ports::FleetShares`], [`crate::ports::FleetOutcomes`]); the Redis adapter keeps
//! them for a fleet.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::arm_stats::ArmState;
use crate::control::Credit;

/// One replica's records of one unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Share {
    pub replica: String,
    /// When that replica began measuring.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    /// Control, treatment (or candidate).
    pub arms: [ArmState; 2],
}

/// Who contributed to a measurement, as a report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Contributor {
    pub replica: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// `null` for this replica: its share is live.
    #[serde(with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
    pub decisions: u64,
}

/// A unit's records merged over the replicas that had any.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub arms: [ArmState; 2],
    pub replicas: Vec<Contributor>,
    /// Whether other replicas' shares were read (false: this replica alone).
    pub fleet: bool,
    /// Why the fleet's shares could not be read, when they could not.
    pub error: Option<String>,
}

impl Measured {
    /// The earliest start of any contributor (when the measurement began).
    pub fn since(&self) -> Option<OffsetDateTime> {
        self.replicas.iter().map(|c| c.since).min()
    }
}

/// This replica's live share merged with the others' last published ones (any entry under this
/// replica's own id is replaced by the live share).
pub fn merge(local: Option<Share>, others: Vec<Share>) -> Measured {
    let mut m = Measured::default();
    let own = local.as_ref().map(|s| s.replica.clone());
    let local_contributor = local.map(|s| (s, None));
    let rest = others
        .into_iter()
        .filter(|s| Some(&s.replica) != own.as_ref())
        .map(|s| {
            let at = Some(s.published_at);
            (s, at)
        });
    for (share, published_at) in local_contributor.into_iter().chain(rest) {
        for (into, from) in m.arms.iter_mut().zip(&share.arms) {
            into.merge(from);
        }
        m.replicas.push(Contributor {
            decisions: share.arms.iter().map(|a| a.decisions).sum(),
            replica: share.replica,
            since: share.since,
            published_at,
        });
    }
    m
}

/// What one publish sends for one unit.
pub struct Outgoing {
    pub unit: String,
    pub share: Share,
    /// Whether to send the outcome samples too.
    pub with_sample: bool,
}

/// One arm a decision was measured in, as the fleet stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwaitingArm {
    /// The unit's key (`experiment:<id>`, `rollout:<id>:<stage>`).
    pub unit: String,
    pub credit: Credit,
}

/// A decision awaiting its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Awaiting {
    pub decision_id: Uuid,
    pub arms: Vec<AwaitingArm>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm_stats::{Observation, UnitStats};
    use crate::experiment::Arm;
    use crate::types::Action;

    fn share(replica: &str, decisions: u64) -> Share {
        let u = UnitStats::new();
        for _ in 0..decisions {
            u.arm(Arm::Treatment).record(&Observation {
                action: Action::Buy,
                confidence: 0.5,
                approved: None,
                latency_us: Some(100),
                inference_us: 10,
            });
        }
        Share {
            replica: replica.into(),
            since: OffsetDateTime::UNIX_EPOCH,
            published_at: OffsetDateTime::UNIX_EPOCH,
            arms: u.states(),
        }
    }

    #[test]
    fn the_live_share_replaces_this_replicas_published_one() {
        let m = merge(
            Some(share("a", 5)),
            vec![share("a", 3), share("b", 7), share("c", 0)],
        );
        assert_eq!(m.arms[1].decisions, 12);
        let ids: Vec<&str> = m.replicas.iter().map(|c| c.replica.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(m.replicas[0].published_at.is_none());
        assert_eq!(m.replicas[1].decisions, 7);
        assert_eq!(merge(None, vec![]).replicas.len(), 0);
    }
}
