//! A Redis connection made on first use (a Redis that is down at start only delays the first
//! call), reconnecting by itself (`ConnectionManager`), with a deadline on connecting and on
//! every call. Shared by the control store and the risk ledger.

use std::time::Duration;

use redis::aio::ConnectionManager;

/// See the module docs. Errors are strings: each user says what failed in its own terms.
pub struct LazyRedis {
    client: redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    timeout: Duration,
}

impl LazyRedis {
    /// Check the URL; nothing is sent yet. The error never quotes the URL (it may hold a
    /// password).
    pub fn open(url: &str, timeout: Duration) -> Result<LazyRedis, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(LazyRedis {
            client,
            conn: tokio::sync::OnceCell::new(),
            timeout,
        })
    }

    /// The connection, made now if it was not yet.
    pub async fn connection(&self) -> Result<ConnectionManager, String> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                tokio::time::timeout(self.timeout, ConnectionManager::new(self.client.clone()))
                    .await
                    .map_err(|_| format!("no connection within {:?}", self.timeout))?
                    .map_err(|e| e.to_string())
            })
            .await?;
        Ok(conn.clone())
    }

    /// `f`'s answer, or why there is none within the deadline.
    pub async fn deadline<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| e.to_string())
    }
}
