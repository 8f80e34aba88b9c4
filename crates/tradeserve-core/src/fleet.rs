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
use crate::rollout::Stage;

/// Which measurements a share, an awaiting decision or a report is of: an experiment's, or
/// one stage of a rollout's (a rollout's stats restart at each stage). Written as
/// `experiment:<id>` or `rollout:<id>:<stage>` where a store needs a string (Redis keys, the
/// awaiting decisions' JSON).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnitKey {
    Experiment(String),
    Rollout { id: String, stage: Stage },
}

impl std::fmt::Display for UnitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitKey::Experiment(id) => write!(f, "experiment:{id}"),
            UnitKey::Rollout { id, stage } => write!(f, "rollout:{id}:{}", stage.as_str()),
        }
    }
}

/// A unit key that is neither `experiment:<id>` nor `rollout:<id>:<stage>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a unit key: {0:?}")]
pub struct NotAUnitKey(pub String);

impl std::str::FromStr for UnitKey {
    type Err = NotAUnitKey;

    fn from_str(s: &str) -> Result<UnitKey, NotAUnitKey> {
        let bad = || NotAUnitKey(s.to_owned());
        if let Some(id) = s.strip_prefix("experiment:") {
            return Ok(UnitKey::Experiment(id.to_owned()));
        }
        let (id, stage) = s
            .strip_prefix("rollout:")
            .and_then(|rest| rest.rsplit_once(':'))
            .ok_or_else(bad)?;
        let stage = Stage::ACTIVE
            .into_iter()
            .chain([Stage::Completed, Stage::RolledBack])
            .find(|st| st.as_str() == stage)
            .ok_or_else(bad)?;
        Ok(UnitKey::Rollout {
            id: id.to_owned(),
            stage,
        })
    }
}

impl Serialize for UnitKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UnitKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UnitKey, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = FleetContributor))]
pub struct Contributor {
    /// The replica's id: `$HOSTNAME` and a random suffix, new at each start.
    pub replica: String,
    /// When that replica began measuring.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// When its share was published; null for the replica answering (its share is live).
    #[serde(with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
    /// Decisions of both arms in its share.
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
    pub unit: UnitKey,
    pub share: Share,
    /// Whether to send the outcome samples too.
    pub with_sample: bool,
}

/// One arm a decision was measured in, as the fleet stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwaitingArm {
    /// The unit the decision was measured in.
    pub unit: UnitKey,
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

    #[test]
    fn unit_keys_are_written_as_the_stores_keep_them_and_read_back() {
        let keys = [
            (UnitKey::Experiment("bull-v2".into()), "experiment:bull-v2"),
            (
                UnitKey::Rollout {
                    id: "v2-all".into(),
                    stage: Stage::Canary,
                },
                "rollout:v2-all:canary",
            ),
            (
                UnitKey::Rollout {
                    id: "r".into(),
                    stage: Stage::RolledBack,
                },
                "rollout:r:rolled_back",
            ),
        ];
        for (key, text) in keys {
            assert_eq!(key.to_string(), text);
            assert_eq!(text.parse::<UnitKey>().unwrap(), key);
            let json = serde_json::to_string(&key).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<UnitKey>(&json).unwrap(), key);
        }
        for bad in ["experiments:x", "rollout:x", "rollout:x:later", "x"] {
            assert_eq!(bad.parse::<UnitKey>(), Err(NotAUnitKey(bad.to_owned())));
        }
    }
}
