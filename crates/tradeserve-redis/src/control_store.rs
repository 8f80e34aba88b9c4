//! The production control store: the state as one JSON value in Redis, swapped by a Lua
//! script that checks the revision first (atomic on the server), with a deadline on every call.
//! Replicas poll it (`control.poll_interval`) and converge within one interval.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tradeserve_core::control::ControlState;
use tradeserve_core::ports::{BoxFuture, ControlStore, StoreError};

use crate::conn::LazyRedis;

const CAS: &str = r"
local cur = redis.call('GET', KEYS[1])
local rev = 0
if cur then rev = tonumber(cjson.decode(cur)['revision']) end
if rev ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
";

/// Control state in Redis under `<prefix>:control`. Connects on first use (with a deadline)
/// and reconnects by itself, so a Redis that is down at start only delays convergence.
pub struct RedisStore {
    redis: LazyRedis,
    key: String,
    url: String,
    script: redis::Script,
}

impl RedisStore {
    /// Check the URL; nothing is sent yet. The URL's password, if any, is never logged.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let redis = LazyRedis::open(url, timeout).map_err(StoreError::from)?;
        Ok(RedisStore {
            redis,
            key: format!("{prefix}:control"),
            url: crate::shown_url(url),
            script: redis::Script::new(CAS),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.redis.connection().await.map_err(StoreError::from)
    }

    async fn deadline<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.redis.deadline(f).await.map_err(StoreError::from)
    }
}

impl ControlStore for RedisStore {
    fn load(&self) -> BoxFuture<'_, Result<ControlState, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let raw: Option<String> = self
                .deadline(redis::cmd("GET").arg(&self.key).query_async(&mut conn))
                .await?;
            match raw {
                None => Ok(ControlState::default()),
                Some(s) => serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", self.key))),
            }
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        expected: u64,
        next: &'a ControlState,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let body =
                serde_json::to_string(next).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut conn = self.connection().await?;
            let mut invocation = self.script.key(&self.key);
            invocation.arg(expected).arg(body);
            let swapped: i64 = self.deadline(invocation.invoke_async(&mut conn)).await?;
            Ok(swapped == 1)
        })
    }

    fn describe(&self) -> String {
        format!("redis {} key {}", self.url, self.key)
    }
}
