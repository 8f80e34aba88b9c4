//! A Redis connection made on first use (a Redis that is down at start only delays the first
//! call), reconnecting by itself (`ConnectionManager`), with a deadline on connecting and on
//! every call. A failed connect is not retried for [`RETRY_AFTER`]: until then calls fail at
//! once instead of each waiting out the connect deadline again (with Redis down, every
//! risk-checked decision would otherwise spend the whole deadline on it). Every adapter of the
//! crate holds one.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::RedisError;

/// See the module docs.
pub struct LazyRedis {
    client: redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    timeout: Duration,
    /// When the last connect failed.
    failed_at: parking_lot::Mutex<Option<Instant>>,
}

/// How long a failed connect is not tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

impl LazyRedis {
    /// Check the URL; nothing is sent yet. The error never quotes the URL (it may hold a
    /// password).
    pub fn open(url: &str, timeout: Duration) -> Result<LazyRedis, RedisError> {
        let client = redis::Client::open(url).map_err(|e| RedisError::Url(e.to_string()))?;
        Ok(LazyRedis {
            client,
            conn: tokio::sync::OnceCell::new(),
            timeout,
            failed_at: parking_lot::Mutex::new(None),
        })
    }

    /// The connection, made now if it was not yet.
    pub async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        if let Some(at) = *self.failed_at.lock()
            && at.elapsed() < RETRY_AFTER
        {
            return Err(RedisError::Backoff {
                ago_ms: at.elapsed().as_millis(),
                retry_after: RETRY_AFTER,
            });
        }
        let made = self
            .conn
            .get_or_try_init(|| async {
                tokio::time::timeout(self.timeout, ConnectionManager::new(self.client.clone()))
                    .await
                    .map_err(|_| RedisError::ConnectTimeout(self.timeout))?
                    .map_err(RedisError::Command)
            })
            .await;
        match made {
            Ok(conn) => Ok(conn.clone()),
            Err(e) => {
                *self.failed_at.lock() = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// `f`'s answer, or why there is none within the deadline.
    pub async fn deadline<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| RedisError::Timeout(self.timeout))?
            .map_err(RedisError::Command)
    }
}
