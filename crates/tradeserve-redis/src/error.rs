//! Why a call to Redis gave no answer, for every adapter of the crate. Each variant prints its
//! whole cause and returns none from `source()`, so a cause chain never shows it twice.

use std::time::Duration;

/// See the module docs.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL does not parse (it is never quoted: it may hold a password).
    #[error("not a Redis URL: {0}")]
    Url(String),
    /// A connect failed recently; calls fail at once until the next try.
    #[error("unreachable (a connect failed {ago_ms} ms ago; next try after {retry_after:?})")]
    Backoff { ago_ms: u128, retry_after: Duration },
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error("{0}")]
    Command(redis::RedisError),
    /// What Redis holds (or what was to be written) is not what this crate reads and writes.
    #[error("unreadable entry {key}: {why}")]
    Unreadable { key: String, why: String },
}

/// What the control store's port says: an entry it cannot read is corrupt, anything else is
/// Redis not answering.
impl From<RedisError> for tradeserve_core::ports::StoreError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Unreadable { .. } => Self::Corrupt(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

/// The same for the fleet's stores.
impl From<RedisError> for tradeserve_core::ports::FleetError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Unreadable { .. } => Self::Corrupt(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<redis::RedisError> for RedisError {
    fn from(e: redis::RedisError) -> RedisError {
        RedisError::Command(e)
    }
}
