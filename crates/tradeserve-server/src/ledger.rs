//! `[ledger]`: where risk positions and daily order counts are kept — this replica's books
//! (rebuilt from its audit log, [`tradeserve_events::books`]) or the fleet's shared ledger in Redis
//! ([`tradeserve_redis::risk_ledger`]) — and what happens while Redis cannot answer.

use tradeserve_core::bounded::PositiveDuration;
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// `memory` (embedded default: this replica's books, rebuilt from the audit log at start)
    /// or `redis` (shared by every replica).
    pub store: LedgerStore,
    /// `redis://[:password@]host:port/db`.
    pub redis_url: String,
    /// Keys are `<prefix>:ledger` (the generation, the order count and the desks' counts) and
    /// `<prefix>:risk:<symbol>` (see `tradeserve_redis::risk_ledger`).
    pub redis_prefix: String,
    /// Deadline of each call to Redis.
    pub timeout: PositiveDuration,
    /// Redis unreachable: `reject` (503 `risk_unavailable`) or `local` (this replica's books).
    pub on_unavailable: Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStore {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    Reject,
    Local,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            store: LedgerStore::Memory,
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_prefix: "tradeserve".into(),
            timeout: PositiveDuration::millis(20),
            on_unavailable: Unavailable::Reject,
        }
    }
}

impl LedgerConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.store == LedgerStore::Redis {
            tradeserve_redis::check_url(&self.redis_url)
                .map_err(|e| format!("ledger.redis_url: {e}"))?;
        }
        Ok(())
    }
}

/// Where the books are described in logs.
pub fn describe(config: &LedgerConfig) -> String {
    format!(
        "{} prefix {}",
        tradeserve_redis::shown_url(&config.redis_url),
        config.redis_prefix
    )
}
