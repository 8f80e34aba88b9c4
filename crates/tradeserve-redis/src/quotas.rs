//! API-key quotas for the whole fleet: the [`SharedQuotas`] port on Redis, so N replicas let a
//! key through at its rate and not N times it. One atomic GCRA step per request (a Lua script):
//! each key is one string, `<prefix>:quota:<key id>`, its theoretical arrival time in
//! microseconds on the Redis server's clock (replicas' clocks never enter), expiring once the
//! key is idle long enough to have its whole burst back. Cost: one round trip to Redis per
//! request of a key with a quota. Unreachable: the caller applies its own limiter (per replica).

use std::sync::Arc;
use std::time::Duration;

use tradeserve_auth::quota::{QuotaUnavailable, Rate, SharedQuotas};
use tradeserve_core::ports::BoxFuture;

use crate::RedisError;
use crate::conn::LazyRedis;

/// KEYS: the key's arrival time. ARGV: the interval between requests (µs), the burst.
/// Replies 0 (through) or the microseconds until a request would pass.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > limit then return next_tat - now - limit end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// See the module docs.
pub struct RedisQuotas {
    redis: Arc<LazyRedis>,
    prefix: String,
    take: redis::Script,
}

impl RedisQuotas {
    /// Check the URL; nothing is sent yet.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisQuotas, RedisError> {
        Ok(RedisQuotas {
            redis: Arc::new(LazyRedis::open(url, timeout)?),
            prefix: prefix.to_owned(),
            take: redis::Script::new(TAKE),
        })
    }

    async fn take_now(&self, id: &str, rate: Rate) -> Result<Result<(), Duration>, RedisError> {
        let mut conn = self.redis.connection().await?;
        let mut call = self.take.key(format!("{}:quota:{id}", self.prefix));
        call.arg(rate.interval_us()).arg(rate.burst.max(1));
        let wait_us: u64 = self.redis.deadline(call.invoke_async(&mut conn)).await?;
        Ok(match wait_us {
            0 => Ok(()),
            us => Err(Duration::from_micros(us)),
        })
    }
}

impl SharedQuotas for RedisQuotas {
    fn take<'a>(
        &'a self,
        id: &'a str,
        rate: Rate,
    ) -> BoxFuture<'a, Result<Result<(), Duration>, QuotaUnavailable>> {
        Box::pin(async move {
            self.take_now(id, rate)
                .await
                .map_err(|e| QuotaUnavailable(format!("Redis: {e}")))
        })
    }
}
