//! Posted outcomes across replicas ([`FleetOutcomes`] on Redis): behind a load balancer an
//! outcome is posted to any replica, not necessarily the one that made the decision. Each
//! replica publishes the decisions awaiting an outcome (with the units and arms they were
//! measured in) with its measurements, and an outcome is credited exactly once fleet-wide by
//! whoever first sets the decision's claim key.
//!
//! Keys (each expiring `ttl` after it is written):
//! - `<prefix>:awaiting:<decision_id>`: JSON `[{"unit", "credit": {"kind", "id", "arm"}}, …]`.
//! - `<prefix>:credited:<decision_id>`: set (`SET NX`) by the replica that credits it.
//!
//! A decision not yet published (its replica publishes every `control.fleet_interval`) is
//! known to its own replica alone, which then credits it without Redis; once published, every
//! replica, its own included, claims it first.

use std::time::Duration;

use tradeserve_core::fleet::{Awaiting, AwaitingArm};
use tradeserve_core::ports::{BoxFuture, FleetError, FleetOutcomes};
use uuid::Uuid;

use crate::RedisError;
use crate::conn::LazyRedis;

/// See the module docs.
pub struct OutcomeStore {
    redis: LazyRedis,
    prefix: String,
    ttl: Duration,
}

impl OutcomeStore {
    /// Check the URL; nothing is sent yet.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        ttl: Duration,
    ) -> Result<OutcomeStore, RedisError> {
        Ok(OutcomeStore {
            redis: LazyRedis::open(url, timeout)?,
            prefix: prefix.to_owned(),
            ttl,
        })
    }

    fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }

    fn awaiting_key(&self, id: Uuid) -> String {
        format!("{}:awaiting:{id}", self.prefix)
    }

    fn credited_key(&self, id: Uuid) -> String {
        format!("{}:credited:{id}", self.prefix)
    }

    /// Make these decisions creditable on every replica (one round trip).
    async fn publish_all(&self, awaiting: &[Awaiting]) -> Result<(), RedisError> {
        if awaiting.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for a in awaiting {
            let json = serde_json::to_string(&a.arms).map_err(|e| RedisError::Unreadable {
                key: self.awaiting_key(a.decision_id),
                why: e.to_string(),
            })?;
            pipe.set_ex(self.awaiting_key(a.decision_id), json, self.ttl_secs())
                .ignore();
        }
        let mut conn = self.redis.connection().await?;
        self.redis.deadline(pipe.query_async::<()>(&mut conn)).await
    }

    /// Where a decision made on any replica was measured (`None`: no replica published it, or
    /// it expired).
    async fn lookup_one(&self, id: Uuid) -> Result<Option<Vec<AwaitingArm>>, RedisError> {
        let mut conn = self.redis.connection().await?;
        let raw: Option<String> = self
            .redis
            .deadline(
                redis::cmd("GET")
                    .arg(self.awaiting_key(id))
                    .query_async(&mut conn),
            )
            .await?;
        raw.map(|s| {
            serde_json::from_str(&s).map_err(|e| RedisError::Unreadable {
                key: self.awaiting_key(id),
                why: e.to_string(),
            })
        })
        .transpose()
    }

    /// Claim the right to credit `id`: true for exactly one caller in the fleet.
    async fn claim_one(&self, id: Uuid) -> Result<bool, RedisError> {
        let mut conn = self.redis.connection().await?;
        let set: Option<String> = self
            .redis
            .deadline(
                redis::cmd("SET")
                    .arg(self.credited_key(id))
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(self.ttl_secs())
                    .query_async(&mut conn),
            )
            .await?;
        Ok(set.is_some())
    }
}

impl FleetOutcomes for OutcomeStore {
    fn publish<'a>(&'a self, awaiting: &'a [Awaiting]) -> BoxFuture<'a, Result<(), FleetError>> {
        Box::pin(async move { self.publish_all(awaiting).await.map_err(FleetError::from) })
    }

    fn lookup(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Vec<AwaitingArm>>, FleetError>> {
        Box::pin(async move { self.lookup_one(id).await.map_err(FleetError::from) })
    }

    fn claim(&self, id: Uuid) -> BoxFuture<'_, Result<bool, FleetError>> {
        Box::pin(async move { self.claim_one(id).await.map_err(FleetError::from) })
    }
}
