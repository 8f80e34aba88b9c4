//! Experiment and rollout measurements for the whole fleet ([`FleetShares`] on Redis): each
//! replica publishes its per-arm records to Redis (the server does so every
//! `control.fleet_interval`), and reports and gates merge every replica's share with this
//! replica's live one ([`tradeserve_core::fleet::merge`]).
//!
//! Layout, per unit (`experiment:<id>` or `rollout:<id>:<stage>`):
//! - `<prefix>:arms:<unit>`: a hash, one field per replica: its [`Share`] as JSON, without the
//!   outcome sample (a few KB: counts, histogram buckets, moments). Gates read only this.
//! - `<prefix>:arms:<unit>:sample`: a hash, field `<replica>:<arm>`: that arm's outcome sample
//!   as little-endian `f64`s (up to 160 KB), published less often than the share; only the
//!   report's bootstrap reads it.
//!
//! A replica's id is unique to its process, so a restarted replica never overwrites what it
//! served before: a stopped replica's last share keeps counting until the unit's keys expire
//! (`ttl` after its last publish).

use std::collections::HashMap;
use std::time::Duration;

use tradeserve_core::experiment::Arm;
use tradeserve_core::fleet::{Outgoing, Share, UnitKey};
use tradeserve_core::ports::{BoxFuture, FleetError, FleetShares};

use crate::RedisError;
use crate::conn::LazyRedis;

/// Where this replica publishes its shares and reads the others'.
pub struct FleetStats {
    redis: LazyRedis,
    prefix: String,
    replica: String,
    ttl: Duration,
}

impl FleetStats {
    /// Check the URL; nothing is sent yet. `replica` must be unique to this process.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        ttl: Duration,
        replica: String,
    ) -> Result<FleetStats, RedisError> {
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

    fn key(&self, unit: &UnitKey) -> String {
        format!("{}:arms:{unit}", self.prefix)
    }

    fn sample_key(&self, unit: &UnitKey) -> String {
        format!("{}:arms:{unit}:sample", self.prefix)
    }

    /// Send these units' shares (one round trip) and refresh their expiry.
    async fn publish_all(&self, units: Vec<Outgoing>) -> Result<(), RedisError> {
        let ttl = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        for mut out in units {
            let key = self.key(&out.unit);
            let samples = out
                .share
                .arms
                .each_mut()
                .map(|a| std::mem::take(&mut a.reservoir));
            let json = serde_json::to_string(&out.share).map_err(|e| RedisError::Unreadable {
                key: key.clone(),
                why: e.to_string(),
            })?;
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
    async fn read_all(&self, unit: &UnitKey, with_samples: bool) -> Result<Vec<Share>, RedisError> {
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

impl FleetShares for FleetStats {
    fn replica(&self) -> &str {
        &self.replica
    }

    fn publish(&self, units: Vec<Outgoing>) -> BoxFuture<'_, Result<(), FleetError>> {
        Box::pin(async move { self.publish_all(units).await.map_err(FleetError::from) })
    }

    fn read<'a>(
        &'a self,
        unit: &'a UnitKey,
        with_samples: bool,
    ) -> BoxFuture<'a, Result<Vec<Share>, FleetError>> {
        Box::pin(async move {
            self.read_all(unit, with_samples)
                .await
                .map_err(FleetError::from)
        })
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
