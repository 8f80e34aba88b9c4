//! Experiment and rollout measurements for the whole fleet (`control.store = "redis"`): each
//! replica publishes its per-arm records ([`ArmState`]) to Redis every
//! `control.fleet_interval`, and reports and gates merge every replica's share with this
//! replica's live one ([`merge`]).
//!
//! Layout, per unit (`experiment:<id>` or `rollout:<id>:<stage>`):
//! - `<prefix>:arms:<unit>`: a hash, one field per replica: its [`Share`] as JSON, without the
//!   outcome sample (a few KB: counts, histogram buckets, moments). Gates read only this.
//! - `<prefix>:arms:<unit>:sample`: a hash, field `<replica>:<arm>`: that arm's outcome sample
//!   as little-endian `f64`s (up to 160 KB), published at most every [`SAMPLE_EVERY`]; only the
//!   report's bootstrap reads it.
//!
//! A replica's id is unique to its process, so a restarted replica never overwrites what it
//! served before: a stopped replica's last share keeps counting until the unit's keys expire
//! (`control.fleet_ttl` after its last publish).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tradeserve_core::arm_stats::ArmState;
use tradeserve_core::experiment::Arm;

use crate::redis_conn::LazyRedis;

/// The outcome sample of a unit is published at most this often (it is large, and only the
/// report's bootstrap reads it).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

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

/// Where this replica publishes its shares and reads the others'.
pub struct FleetStats {
    redis: LazyRedis,
    prefix: String,
    replica: String,
    ttl: Duration,
}

/// What one publish sends for one unit.
pub struct Outgoing {
    pub unit: String,
    pub share: Share,
    /// Whether to send the outcome samples too.
    pub with_sample: bool,
}

impl FleetStats {
    /// Check the URL; nothing is sent yet. `replica` must be unique to this process.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        ttl: Duration,
        replica: String,
    ) -> Result<FleetStats, String> {
        Ok(FleetStats {
            redis: LazyRedis::open(url, timeout)?,
            prefix: prefix.to_owned(),
            replica,
            ttl,
        })
    }

    /// This process's id among the replicas: `$HOSTNAME` (the pod's name on Kubernetes) and a
    /// random suffix, so a restart is a new contributor.
    pub fn process_id() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into());
        // The last 8 hex digits of a v7 UUID are random (the first ones are the clock).
        let id = uuid::Uuid::now_v7().simple().to_string();
        format!("{host}-{}", &id[id.len() - 8..])
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn key(&self, unit: &str) -> String {
        format!("{}:arms:{unit}", self.prefix)
    }

    fn sample_key(&self, unit: &str) -> String {
        format!("{}:arms:{unit}:sample", self.prefix)
    }

    /// Send these units' shares (one round trip) and refresh their expiry.
    pub async fn publish(&self, units: Vec<Outgoing>) -> Result<(), String> {
        let ttl = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        for mut out in units {
            let key = self.key(&out.unit);
            let samples = out
                .share
                .arms
                .each_mut()
                .map(|a| std::mem::take(&mut a.reservoir));
            let json = serde_json::to_string(&out.share).map_err(|e| e.to_string())?;
            pipe.hset(&key, &self.replica, json).ignore();
            pipe.expire(&key, ttl).ignore();
            if out.with_sample {
                let sample_key = self.sample_key(&out.unit);
                for (arm, sample) in Arm::ALL.into_iter().zip(samples) {
                    let bytes: Vec<u8> = sample.iter().flat_map(|x| x.to_le_bytes()).collect();
                    let field = format!("{}:{}", self.replica, arm.as_str());
                    pipe.hset(&sample_key, field, bytes).ignore();
                }
                pipe.expire(&sample_key, ttl).ignore();
            }
        }
        let mut conn = self.redis.connection().await?;
        self.redis.deadline(pipe.query_async::<()>(&mut conn)).await
    }

    /// Every replica's last published share of `unit` (with their outcome samples when
    /// `with_samples`). An entry that does not parse is skipped and logged.
    pub async fn read(&self, unit: &str, with_samples: bool) -> Result<Vec<Share>, String> {
        let mut conn = self.redis.connection().await?;
        let raw: HashMap<String, String> = self
            .redis
            .deadline(
                redis::cmd("HGETALL")
                    .arg(self.key(unit))
                    .query_async(&mut conn),
            )
            .await?;
        let mut shares: Vec<Share> = raw
            .into_iter()
            .filter_map(|(replica, json)| match serde_json::from_str::<Share>(&json) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(%unit, %replica, error = %e, "unreadable fleet share skipped");
                    None
                }
            })
            .collect();
        shares.sort_by(|a, b| a.replica.cmp(&b.replica));
        if with_samples && !shares.is_empty() {
            let samples: HashMap<String, Vec<u8>> = self
                .redis
                .deadline(
                    redis::cmd("HGETALL")
                        .arg(self.sample_key(unit))
                        .query_async(&mut conn),
                )
                .await?;
            for share in &mut shares {
                for (arm, state) in Arm::ALL.into_iter().zip(share.arms.iter_mut()) {
                    let field = format!("{}:{}", share.replica, arm.as_str());
                    state.reservoir = samples.get(&field).map(|b| floats(b)).unwrap_or_default();
                }
            }
        }
        Ok(shares)
    }
}

/// Little-endian `f64`s (a trailing partial value is ignored; non-finite values dropped).
fn floats(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok())
        .map(f64::from_le_bytes)
        .filter(|x| x.is_finite())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeserve_core::arm_stats::{Observation, UnitStats};
    use tradeserve_core::types::Action;

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
    fn samples_travel_as_little_endian_floats() {
        let xs: [f64; 3] = [0.1, -2.5e-7, 1e300];
        let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(floats(&bytes), xs);
        let mut odd = bytes.clone();
        odd.push(1);
        assert_eq!(floats(&odd), xs);
        assert!(floats(&f64::NAN.to_le_bytes()).is_empty());
    }
}
