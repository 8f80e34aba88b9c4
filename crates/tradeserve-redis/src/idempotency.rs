//! Idempotency keys for the whole fleet: the [`IdempotencyStore`] port on Redis, used when
//! the risk ledger (or, without it, the control store) is in Redis, so a repeat sent to
//! another replica is answered with the first decision too. Each key is one hash,
//! `<prefix>:idem:<scope/key>` (fingerprint, state, the decision), claimed and completed by
//! Lua scripts (atomic on the server) and expiring on its own: the in-flight TTL while
//! claimed, `ttl` once decided. Redis unreachable: a request with a key is refused (503
//! `idempotency_unavailable`), never decided without the check.

use std::sync::Arc;
use std::time::Duration;

use tradeserve_core::idempotency::{Claim, IdempotencyStore, Limits, Stored, Unavailable};
use tradeserve_core::ports::BoxFuture;

use crate::RedisError;
use crate::conn::LazyRedis;

/// KEYS: the key's hash. ARGV: fingerprint, in-flight TTL (ms). Replies `{status, approved,
/// decision}`.
const CLAIM: &str = r"
local fp = redis.call('HGET', KEYS[1], 'fp')
if not fp then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'in_flight')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new', '', ''}
end
if fp ~= ARGV[1] then return {'conflict', '', ''} end
if redis.call('HGET', KEYS[1], 'state') ~= 'done' then return {'in_flight', '', ''} end
return {'repeat', redis.call('HGET', KEYS[1], 'approved'), redis.call('HGET', KEYS[1], 'decision')}
";

/// KEYS: the key's hash. ARGV: fingerprint, approved (1/0), decision, TTL (ms).
const COMPLETE: &str = r"
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') == 'done' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'approved', ARGV[2], 'decision', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// KEYS: the key's hash. ARGV: fingerprint. Frees a claim that got no decision.
const ABANDON: &str = r"
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') ~= 'done' then
  redis.call('DEL', KEYS[1])
end
return 1
";

/// See the module docs.
pub struct RedisIdempotency {
    redis: Arc<LazyRedis>,
    prefix: String,
    limits: Limits,
    claim: redis::Script,
    complete: redis::Script,
    abandon: redis::Script,
}

impl RedisIdempotency {
    /// Check the URL; nothing is sent yet.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        limits: Limits,
    ) -> Result<RedisIdempotency, RedisError> {
        Ok(RedisIdempotency {
            redis: Arc::new(LazyRedis::open(url, timeout)?),
            prefix: prefix.to_owned(),
            limits,
            claim: redis::Script::new(CLAIM),
            complete: redis::Script::new(COMPLETE),
            abandon: redis::Script::new(ABANDON),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.prefix)
    }

    async fn claim_now(&self, key: &str, fingerprint: &str) -> Result<Claim, RedisError> {
        let mut conn = self.redis.connection().await?;
        let mut call = self.claim.key(self.key(key));
        call.arg(fingerprint).arg(millis(self.limits.in_flight_ttl));
        let (status, approved, decision): (String, String, Vec<u8>) =
            self.redis.deadline(call.invoke_async(&mut conn)).await?;
        Ok(match status.as_str() {
            "new" => Claim::New,
            "conflict" => Claim::Conflict,
            "in_flight" => Claim::InFlight,
            _ => Claim::Repeat(Stored {
                approved: approved == "1",
                decision: decision.into(),
            }),
        })
    }

    async fn run(&self, script: &redis::Script, key: &str, args: Vec<Vec<u8>>) {
        let result = async {
            let mut conn = self.redis.connection().await?;
            let mut call = script.key(self.key(key));
            for a in args {
                call.arg(a);
            }
            self.redis
                .deadline(call.invoke_async::<i64>(&mut conn))
                .await
        }
        .await;
        if let Err(why) = result {
            // The claim expires by itself after the in-flight TTL.
            tracing::warn!(error = %why, "idempotency: Redis did not take the key's decision");
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl IdempotencyStore for RedisIdempotency {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Claim, Unavailable>> {
        Box::pin(async move {
            self.claim_now(key, fingerprint)
                .await
                .map_err(|e| Unavailable(format!("Redis: {e}")))
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        stored: Stored,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let args = vec![
                fingerprint.as_bytes().to_vec(),
                vec![if stored.approved { b'1' } else { b'0' }],
                stored.decision.to_vec(),
                millis(self.limits.ttl).to_string().into_bytes(),
            ];
            self.run(&self.complete, key, args).await;
        })
    }

    fn abandon<'a>(&'a self, key: &'a str, fingerprint: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let args = vec![fingerprint.as_bytes().to_vec()];
            self.run(&self.abandon, key, args).await;
        })
    }
}
