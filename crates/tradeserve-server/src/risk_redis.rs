//! The shared risk ledger (`[ledger] store = "redis"`): every replica's orders go through one
//! Lua script on Redis that reads a symbol's book (position, the day and its approved orders)
//! and the trading halt, and applies the order only if the position stays within the bound
//! the limits give at its price ([`max_abs_position`]) and the day's count within
//! `max_daily_orders` — one atomic step on the server, so any number of replicas together
//! never pass a limit. The script returns the book as it was; [`evaluate`] then grades every
//! check on it for the answer (the same comparisons, so it agrees with the script).
//!
//! Redis unreachable or slow (past `timeout`): 503 `risk_unavailable` (fail closed), unless
//! `on_unavailable = "local"`, which checks against this replica's own books meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tradeserve_core::ledger::InMemoryRiskLedger;
use tradeserve_core::ports::{BoxFuture, RiskError, RiskLedger};
use tradeserve_core::risk::{
    CheckStatus, Order, RiskLimits, RiskValidation, SymbolBook, evaluate, max_abs_position,
};
use tradeserve_core::types::Action;

use crate::redis_conn::LazyRedis;

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// `memory` (embedded default: this replica's books, rebuilt from the audit log at start)
    /// or `redis` (shared by every replica).
    pub store: LedgerStore,
    /// `redis://[:password@]host:port/db`.
    pub redis_url: String,
    /// Keys are `<prefix>:risk:<symbol>` and `<prefix>:risk:halt`.
    pub redis_prefix: String,
    /// Deadline of each call to Redis.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
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
            timeout: Duration::from_millis(20),
            on_unavailable: Unavailable::Reject,
        }
    }
}

impl LedgerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.store == LedgerStore::Redis {
            redis::Client::open(self.redis_url.as_str())
                .map_err(|e| format!("ledger.redis_url: {e}"))?;
        }
        if self.timeout.is_zero() {
            return Err("ledger.timeout must be > 0".into());
        }
        Ok(())
    }
}

/// KEYS: the book, the halt. ARGV: signed quantity, largest absolute position, day, largest
/// daily count, 1 to apply (0: read only). Returns position and count before, halted, applied.
const CHECK_AND_APPLY: &str = r"
local pos = tonumber(redis.call('HGET', KEYS[1], 'position') or '0')
local count = tonumber(redis.call('HGET', KEYS[1], 'orders') or '0')
if redis.call('HGET', KEYS[1], 'day') ~= ARGV[3] then count = 0 end
local halted = redis.call('EXISTS', KEYS[2])
local after = pos + tonumber(ARGV[1])
local ok = halted == 0 and math.abs(after) <= tonumber(ARGV[2])
  and count + 1 <= tonumber(ARGV[4]) and ARGV[5] == '1'
if ok then
  redis.call('HSET', KEYS[1], 'position', after, 'day', ARGV[3], 'orders', count + 1)
end
return {pos, count, halted, ok and 1 or 0}
";

/// KEYS: the book. ARGV: signed quantity, day. Undoes an applied order.
const REVERT: &str = r"
redis.call('HINCRBY', KEYS[1], 'position', -tonumber(ARGV[1]))
if redis.call('HGET', KEYS[1], 'day') == ARGV[2] then
  redis.call('HINCRBY', KEYS[1], 'orders', -1)
end
return 1
";

/// See the module docs.
pub struct RedisRiskLedger {
    redis: LazyRedis,
    prefix: String,
    check: redis::Script,
    revert: redis::Script,
    /// `on_unavailable = "local"`: this replica's books.
    local: Option<Arc<InMemoryRiskLedger>>,
    /// Logged once per outage.
    failing: AtomicBool,
}

/// What the script saw and did.
struct Applied {
    book: SymbolBook,
    halted: bool,
    applied: bool,
}

impl RedisRiskLedger {
    /// Check the URL; nothing is sent yet. `local` answers while Redis cannot.
    pub fn new(
        config: &LedgerConfig,
        local: Option<Arc<InMemoryRiskLedger>>,
    ) -> Result<RedisRiskLedger, String> {
        let redis = LazyRedis::open(&config.redis_url, config.timeout)
            .map_err(|e| format!("ledger.redis_url: {e}"))?;
        Ok(RedisRiskLedger {
            redis,
            prefix: config.redis_prefix.clone(),
            check: redis::Script::new(CHECK_AND_APPLY),
            revert: redis::Script::new(REVERT),
            local,
            failing: AtomicBool::new(false),
        })
    }

    fn book_key(&self, symbol: &str) -> String {
        format!("{}:risk:{symbol}", self.prefix)
    }

    /// The key that, while it exists, halts every order on every replica.
    pub fn halt_key(&self) -> String {
        format!("{}:risk:halt", self.prefix)
    }

    /// Run the script for `order`, applying it only if `apply`.
    async fn run(
        &self,
        order: &Order<'_>,
        limits: &RiskLimits,
        apply: bool,
    ) -> Result<Applied, String> {
        let mut conn = self.redis.connection().await?;
        let mut call = self.check.key(self.book_key(order.symbol));
        call.key(self.halt_key())
            .arg(signed(order))
            .arg(max_abs_position(order.price, limits))
            .arg(order.day.to_string())
            .arg(limits.max_daily_orders)
            .arg(u8::from(apply));
        let (position, count, halted, applied): (i64, u64, u8, u8) =
            self.redis.deadline(call.invoke_async(&mut conn)).await?;
        Ok(Applied {
            book: SymbolBook {
                position,
                orders_today: count,
                day: Some(order.day),
            },
            halted: halted == 1,
            applied: applied == 1,
        })
    }

    async fn check_and_apply_shared(
        &self,
        order: &Order<'_>,
        limits: &RiskLimits,
    ) -> Result<RiskValidation, RiskError> {
        // What does not depend on the book (restricted list, order size) decides whether the
        // script may apply the order at all.
        let alone = evaluate(order, &SymbolBook::default(), limits, false);
        let apply = alone.checks.restricted_list != CheckStatus::Fail
            && alone.checks.order_notional != CheckStatus::Fail;
        let seen = match self.run(order, limits, apply).await {
            Ok(seen) => seen,
            Err(why) => return self.unavailable(order, limits, why).await,
        };
        if self.failing.swap(false, Ordering::SeqCst) {
            tracing::info!("risk ledger: Redis answers again");
        }
        let validation = evaluate(order, &seen.book, limits, seen.halted);
        if validation.approved != seen.applied {
            // Never expected: the script's bound and `evaluate` use the same comparisons.
            if seen.applied {
                self.revert_shared(order).await;
            }
            tracing::error!(
                symbol = order.symbol,
                approved = validation.approved,
                applied = seen.applied,
                "risk ledger: the script and the rules disagree; order refused"
            );
            return Err(RiskError::Unavailable(
                "the shared ledger and the risk rules disagree on this order".into(),
            ));
        }
        Ok(validation)
    }

    async fn unavailable(
        &self,
        order: &Order<'_>,
        limits: &RiskLimits,
        why: String,
    ) -> Result<RiskValidation, RiskError> {
        if !self.failing.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %why, local = self.local.is_some(), "risk ledger: Redis unavailable");
        }
        match &self.local {
            Some(local) => local.check_and_apply(order, limits).await,
            None => Err(RiskError::Unavailable(format!("Redis: {why}"))),
        }
    }

    async fn revert_shared(&self, order: &Order<'_>) {
        let result = async {
            let mut conn = self.redis.connection().await?;
            let mut call = self.revert.key(self.book_key(order.symbol));
            call.arg(signed(order)).arg(order.day.to_string());
            self.redis
                .deadline(call.invoke_async::<i64>(&mut conn))
                .await
        }
        .await;
        if let Err(why) = result {
            // The position stays counted: conservative, never over the limit.
            tracing::error!(symbol = order.symbol, error = %why, "risk ledger: could not undo an order whose decision was not returned");
        }
    }
}

/// The order's change to the position, in shares.
fn signed(order: &Order<'_>) -> i64 {
    order.action.direction() * i64::try_from(order.quantity).unwrap_or(i64::MAX)
}

/// An order that changes nothing (hold, zero shares) never reaches Redis.
fn inert(order: &Order<'_>) -> bool {
    order.action == Action::Hold || order.quantity == 0
}

impl RiskLedger for RedisRiskLedger {
    fn check_and_apply<'a>(
        &'a self,
        order: &'a Order<'a>,
        limits: &'a RiskLimits,
    ) -> BoxFuture<'a, Result<RiskValidation, RiskError>> {
        Box::pin(async move {
            if inert(order) {
                return Ok(evaluate(order, &SymbolBook::default(), limits, false));
            }
            self.check_and_apply_shared(order, limits).await
        })
    }

    fn revert<'a>(&'a self, order: &'a Order<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if inert(order) {
                return;
            }
            match &self.local {
                // Approved by this replica's books while Redis was away.
                Some(local) if self.failing.load(Ordering::SeqCst) => local.revert(order).await,
                _ => self.revert_shared(order).await,
            }
        })
    }
}

/// Where the books are described in logs.
pub fn describe(config: &LedgerConfig) -> String {
    match config.redis_url.rsplit_once('@') {
        Some((_, host)) => format!("redis://…@{host} prefix {}", config.redis_prefix),
        None => format!("{} prefix {}", config.redis_url, config.redis_prefix),
    }
}
