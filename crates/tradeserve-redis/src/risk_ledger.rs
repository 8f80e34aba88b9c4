//! The shared risk ledger (the [`RiskLedger`] port on Redis): every replica's orders go through one
//! Lua script on Redis that reads a symbol's book (position, the day and its approved orders)
//! and the order flow (the desk's notional today, the symbol's and the desk's orders this
//! second, the symbol's orders in the latch's current window) and applies the order only if the
//! position stays within the bound the limits give at its price ([`max_abs_position`]) and
//! every count within its limit — one atomic step on the server, so any number of replicas
//! together never pass a limit. The script returns what it saw; [`evaluate_with`] then grades
//! every check on it for the answer (the same comparisons, so it agrees with the script).
//!
//! A ledger that lost its data is never read as flat. `<prefix>:ledger` names its generation
//! (written only by a rebuild, [`crate::rebuild`]) and counts the
//! orders applied in it; every script checks it first. No generation (Redis restarted without
//! persistence, `FLUSHALL`, a failover to an empty replica), or a count lower than one this
//! replica has seen (a failover to a replica that lagged, which marks the ledger `lost` for the
//! whole fleet): 503 `risk_unavailable`, and readiness says why, until it is rebuilt from the
//! fleet's audit logs. A task probes it every second, so readiness sees this without an order.
//!
//! Redis unreachable or slow (past the deadline): 503 `risk_unavailable` (fail closed), unless
//! the ledger was given this replica's own books to check against meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tradeserve_core::ledger::InMemoryRiskLedger;
use tradeserve_core::ports::{BoxFuture, RiskError, RiskLedger, Unhealthy};
use tradeserve_core::risk::{
    CheckStatus, Flow, Order, RiskLimits, RiskValidation, SymbolBook, evaluate, evaluate_with,
    max_abs_position,
};
use tradeserve_core::types::Action;

use crate::RedisError;
use crate::conn::LazyRedis;

/// The guard every script starts with. KEYS[1]: the ledger hash; ARGV[1]: the generation this
/// replica knows (empty: none yet), ARGV[2]: the highest order sequence it has seen in it. A
/// hash without a generation is a ledger that lost its data (or was never initialised): `reset`.
/// A sequence below one a replica has seen is a ledger that went back in time (a failover to a
/// replica that lagged): the script marks the hash `lost`, so every replica refuses from then
/// on, until a rebuild. A ledger of another layout than [`LAYOUT`] (written by an older
/// version, which kept the desks' counts in keys of their own) is refused the same way: its
/// desks would read as flat. Replies are `{status, generation or why, seq, …}`. `$fields`:
/// more fields of the ledger hash to read in the same call (`meta[5]` on).
macro_rules! guard {
    ($fields:literal) => {
        concat!(
            "local meta = redis.call('HMGET', KEYS[1], 'generation', 'lost', 'seq', 'layout'",
            $fields,
            ")\n",
            r"local gen, lost = meta[1], meta[2]
if not gen then return {'reset', '', 0, 0, 0, 0, 0, 0, 0, 0} end
if lost then return {'lost', lost, 0, 0, 0, 0, 0, 0, 0, 0} end
if meta[4] ~= '2' then return {'layout', meta[4] or '1', 0, 0, 0, 0, 0, 0, 0, 0} end
local seq = tonumber(meta[3] or '0')
if gen == ARGV[1] and seq < tonumber(ARGV[2]) then
  lost = 'the ledger went back from order ' .. ARGV[2] .. ' to order ' .. seq ..
    ' (a failover to a replica that lagged?)'
  redis.call('HSET', KEYS[1], 'lost', lost)
  return {'lost', lost, 0, 0, 0, 0, 0, 0, 0, 0}
end
"
        )
    };
}

/// KEYS: the ledger, the symbol's book. ARGV after the guard's: signed quantity,
/// largest absolute position, day, largest daily count, 1 to apply (0: read only; a halted
/// order, or one that fails a check that depends on no count), the order's notional and the
/// desk's daily limit (cents), the symbol's and the desk's orders a second, the latch's
/// largest count, the order's UTC second and its latch window, the desk. The book holds the
/// symbol's counts (position; orders of the day, of the second, of the latch's window); the
/// ledger hash holds each desk's (notional of the day, orders of the second, in fields
/// `desk:<desk>:…`), so the guard's read and the order count's write carry them: a desk trades
/// many symbols, and a hash of its own cost a quarter of the script's time. Each count names
/// the day, second or window it belongs to, and a count of a past one reads as 0, so nothing
/// needs to expire; an order of an earlier window than the count's (it reached Redis after a
/// later one) counts in the later window, so a count never goes back.
/// Replies `{status, generation, seq, position before, count before, applied, desk notional
/// before, symbol and desk orders this second before, symbol orders in the window before}`.
const CHECK_AND_APPLY: &str = concat!(
    "local dk = 'desk:' .. ARGV[15] .. ':'\n",
    guard!(", dk .. 'day', dk .. 'notional', dk .. 'sec', dk .. 'sec_n'"),
    r"
local book = redis.call('HMGET', KEYS[2], 'position', 'orders', 'day', 'sec', 'sec_n', 'win', 'win_n')
local pos = tonumber(book[1] or '0')
-- A stored count `n` of day, second or window `at`, as an order of `window` sees it: that
-- count when `at` is the order's or later (an order that reaches Redis after one of a later
-- window counts in that window: a count never goes back), else 0 in the order's window.
-- Seconds and windows compare as numbers, days (YYYY-MM-DD) as strings.
local function current(at, n, window)
  local a, w = tonumber(at), tonumber(window)
  if at and ((a and w and a >= w) or (not a and at >= window)) then
    return at, tonumber(n or '0')
  end
  return window, 0
end
local day, count = current(book[3], book[2], ARGV[5])
local sec, srate = current(book[4], book[5], ARGV[13])
local win, recent = current(book[6], book[7], ARGV[14])
local dday, desk = current(meta[5], meta[6], ARGV[5])
local dsec, drate = current(meta[7], meta[8], ARGV[13])
local after = pos + tonumber(ARGV[3])
local ok = math.abs(after) <= tonumber(ARGV[4])
  and count + 1 <= tonumber(ARGV[6]) and ARGV[7] == '1'
  and desk + tonumber(ARGV[8]) <= tonumber(ARGV[9])
  and srate + 1 <= tonumber(ARGV[10]) and drate + 1 <= tonumber(ARGV[11])
  and recent + 1 <= tonumber(ARGV[12])
if ok then
  redis.call('HSET', KEYS[2], 'position', after, 'day', day, 'orders', count + 1,
    'sec', sec, 'sec_n', srate + 1, 'win', win, 'win_n', recent + 1)
  seq = seq + 1
  redis.call('HSET', KEYS[1], 'seq', seq, dk .. 'day', dday,
    dk .. 'notional', desk + tonumber(ARGV[8]), dk .. 'sec', dsec, dk .. 'sec_n', drate + 1)
end
return {'ok', gen, seq, pos, count, ok and 1 or 0, desk, srate, drate, recent}
"
);

/// KEYS: the ledger. Only the guard: what the ledger's state is (the watcher's probe).
const PROBE: &str = concat!(guard!(""), "return {'ok', gen, seq, 0, 0, 0, 0, 0, 0, 0}\n");

/// KEYS: the ledger, the book. ARGV: the generation the order was applied in, signed
/// quantity, day, notional (cents), desk. Undoes an applied order's position, count and
/// notional — in the same generation only (a rebuilt ledger never held it). The rate and the
/// latch keep counting it (conservative).
const REVERT: &str = r"
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 0 end
redis.call('HINCRBY', KEYS[2], 'position', -tonumber(ARGV[2]))
if redis.call('HGET', KEYS[2], 'day') == ARGV[3] then
  redis.call('HINCRBY', KEYS[2], 'orders', -1)
end
local dk = 'desk:' .. ARGV[5] .. ':'
if redis.call('HGET', KEYS[1], dk .. 'day') == ARGV[3] then
  redis.call('HINCRBY', KEYS[1], dk .. 'notional', -tonumber(ARGV[4]))
end
return 1
";

/// A script's reply: status, generation (or why the ledger is lost), sequence, then the
/// book's position and count before the order, applied, and the flow before it (desk
/// notional in cents, symbol and desk orders this second, symbol orders in the window).
type Reply = (String, String, u64, i64, u64, u8, u64, u64, u64, u64);

/// What this replica knows of the shared ledger.
#[derive(Debug, Default)]
struct Known {
    generation: String,
    /// The highest order sequence seen in `generation`.
    seq: u64,
    /// Why no order can be checked (reset or lost), until a rebuild.
    problem: Option<String>,
}

/// See the module docs.
pub struct RedisRiskLedger {
    redis: LazyRedis,
    prefix: String,
    check: redis::Script,
    probe: redis::Script,
    revert: redis::Script,
    /// `on_unavailable = "local"`: this replica's books.
    local: Option<Arc<InMemoryRiskLedger>>,
    /// Logged once per outage.
    failing: AtomicBool,
    known: parking_lot::Mutex<Known>,
}

/// What the script saw and did.
struct Applied {
    book: SymbolBook,
    flow: Flow,
    applied: bool,
}

/// The ledger hash's `layout` the scripts read (the guard refuses any other; a rebuild writes
/// it).
pub const LAYOUT: &str = "2";

/// How often [`RedisRiskLedger::watch`] probes the ledger.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

impl RedisRiskLedger {
    /// Check the URL; nothing is sent yet. Keys are `<prefix>:ledger` (the generation, the
    /// order count and the desks' counts) and `<prefix>:risk:<symbol>`; each call waits at
    /// most `timeout`. `local` answers while Redis cannot. Inside a Tokio runtime, a task
    /// probes the ledger every [`WATCH_EVERY`] (readiness sees a reset without waiting for an
    /// order), for as long as the ledger lives.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        local: Option<Arc<InMemoryRiskLedger>>,
    ) -> Result<Arc<RedisRiskLedger>, RedisError> {
        let redis = LazyRedis::open(url, timeout)?;
        let ledger = Arc::new(RedisRiskLedger {
            redis,
            prefix: prefix.to_owned(),
            check: redis::Script::new(CHECK_AND_APPLY),
            probe: redis::Script::new(PROBE),
            revert: redis::Script::new(REVERT),
            local,
            failing: AtomicBool::new(false),
            known: parking_lot::Mutex::new(Known::default()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch(Arc::downgrade(&ledger)));
        }
        Ok(ledger)
    }

    fn book_key(&self, symbol: &str) -> String {
        format!("{}:risk:{symbol}", self.prefix)
    }

    /// The hash naming the ledger's generation (see [`crate::rebuild`]) and holding the
    /// desks' counts.
    pub fn ledger_key(prefix: &str) -> String {
        format!("{prefix}:ledger")
    }

    /// The ledger hash's field holding `count` (`day`, `notional`, `sec`, `sec_n`) of `desk`.
    pub fn desk_field(desk: &str, count: &str) -> String {
        format!("desk:{desk}:{count}")
    }

    /// The guard's arguments: the generation known and the highest sequence seen in it.
    fn known_args(&self) -> (String, u64) {
        let k = self.known.lock();
        (k.generation.clone(), k.seq)
    }

    /// Take in a reply's status: `Err(why)` when the ledger is reset or lost.
    fn learn(&self, reply: &Reply) -> Result<(), Unhealthy> {
        let (status, detail, seq) = (reply.0.as_str(), &reply.1, reply.2);
        let mut k = self.known.lock();
        let problem = match status {
            "ok" => {
                if k.generation != *detail {
                    if !k.generation.is_empty() || k.problem.is_some() {
                        tracing::warn!(generation = %detail, "risk ledger: a rebuilt ledger in Redis; orders are checked against it");
                    }
                    k.generation.clone_from(detail);
                    k.seq = seq;
                }
                k.seq = k.seq.max(seq);
                None
            }
            "layout" => Some(format!(
                "the shared ledger in Redis has layout {detail}, written by an older TradeServe \
                 (this one reads layout {LAYOUT}: the desks' counts in the ledger hash); rebuild \
                 it with `tradeserve risk rebuild-shared --replace`"
            )),
            "reset" => Some(
                "the shared ledger in Redis has no generation: it lost its data (a restart \
                 without persistence, FLUSHALL, a failover) or was never initialised; rebuild it \
                 with `tradeserve risk rebuild-shared`"
                    .to_owned(),
            ),
            _ => Some(format!(
                "the shared ledger in Redis is marked lost ({detail}); rebuild it with \
                 `tradeserve risk rebuild-shared`"
            )),
        };
        if problem.is_some() && k.problem.is_none() {
            tracing::error!(
                error = problem.as_deref().unwrap_or_default(),
                "risk ledger: risk-checked orders are refused (503 risk_unavailable) until the ledger is rebuilt"
            );
        }
        k.problem.clone_from(&problem);
        problem.map_or(Ok(()), |why| Err(Unhealthy(why)))
    }

    /// Probe the ledger once (the watcher).
    async fn probe_once(&self) -> Result<(), RedisError> {
        let mut conn = self.redis.connection().await?;
        let (generation, seq) = self.known_args();
        let mut call = self.probe.key(Self::ledger_key(&self.prefix));
        call.arg(generation).arg(seq);
        let reply: Reply = self.redis.deadline(call.invoke_async(&mut conn)).await?;
        // A reset or lost ledger is recorded for readiness by `learn`.
        let _ = self.learn(&reply);
        Ok(())
    }

    /// Run the script for `order`, applying it only if `apply`. `Ok(Err(why))`: the ledger
    /// answered, but is reset or lost.
    async fn run(
        &self,
        order: &Order<'_>,
        limits: &RiskLimits,
        apply: bool,
    ) -> Result<Result<Applied, Unhealthy>, RedisError> {
        let mut conn = self.redis.connection().await?;
        let mut call = self.check.prepare_invoke();
        self.keys(&mut call, order);
        self.args(&mut call, order, limits, apply);
        let reply: Reply = self.redis.deadline(call.invoke_async(&mut conn)).await?;
        if let Err(why) = self.learn(&reply) {
            return Ok(Err(why));
        }
        let (_, _, _, position, count, applied, desk, symbol_rate, desk_rate, recent) = reply;
        Ok(Ok(Applied {
            book: SymbolBook {
                position,
                orders_today: count,
                day: Some(order.day),
            },
            flow: Flow {
                desk_notional_cents: desk,
                symbol_this_second: symbol_rate,
                desk_this_second: desk_rate,
                symbol_in_window: recent,
            },
            applied: applied == 1,
        }))
    }

    /// The check script's keys for `order` (see [`CHECK_AND_APPLY`]).
    fn keys(&self, call: &mut redis::ScriptInvocation<'_>, order: &Order<'_>) {
        call.key(Self::ledger_key(&self.prefix))
            .key(self.book_key(order.symbol));
    }

    /// The check script's arguments (see [`CHECK_AND_APPLY`]).
    fn args(
        &self,
        call: &mut redis::ScriptInvocation<'_>,
        order: &Order<'_>,
        limits: &RiskLimits,
        apply: bool,
    ) {
        let (generation, seq) = self.known_args();
        let (desk_cents, desk_rate) = order.desk_bounds(limits);
        call.arg(generation)
            .arg(seq)
            .arg(signed(order))
            .arg(max_abs_position(order.price, limits))
            .arg(order.day.to_string())
            .arg(limits.max_daily_orders)
            .arg(u8::from(apply))
            .arg(order.notional_cents())
            .arg(desk_cents)
            .arg(limits.max_orders_per_second_symbol)
            .arg(desk_rate)
            .arg(limits.repeated_execution_max)
            .arg(order.second())
            .arg(order.latch_window(limits))
            .arg(order.desk);
    }

    async fn check_and_apply_shared(
        &self,
        order: &Order<'_>,
        limits: &RiskLimits,
    ) -> Result<RiskValidation, RiskError> {
        // What does not depend on the book (restricted list, order size, a halt) decides
        // whether the script may apply the order at all.
        let alone = evaluate(order, &SymbolBook::default(), limits);
        let apply = alone.checks.restricted_list != CheckStatus::Fail
            && alone.checks.order_notional != CheckStatus::Fail
            && alone.checks.order_quantity != CheckStatus::Fail
            && alone.checks.kill_switch != CheckStatus::Fail;
        let seen = match self.run(order, limits, apply).await {
            Ok(Ok(seen)) => seen,
            // Reachable but reset or lost: never this replica's own books instead.
            Ok(Err(why)) => return Err(RiskError::Unavailable(why.0)),
            Err(why) => return self.unavailable(order, limits, why).await,
        };
        if self.failing.swap(false, Ordering::SeqCst) {
            tracing::info!("risk ledger: Redis answers again");
        }
        let validation = evaluate_with(order, &seen.book, &seen.flow, limits);
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
        why: RedisError,
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
        let (generation, _) = self.known_args();
        let result = async {
            let mut conn = self.redis.connection().await?;
            let mut call = self.revert.key(Self::ledger_key(&self.prefix));
            call.key(self.book_key(order.symbol))
                .arg(generation)
                .arg(signed(order))
                .arg(order.day.to_string())
                .arg(order.notional_cents())
                .arg(order.desk);
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

/// Probe the ledger every [`WATCH_EVERY`] while it lives. Unreachable Redis is left to the
/// orders (each one says so); the watcher only keeps a reset or lost ledger visible.
async fn watch(ledger: std::sync::Weak<RedisRiskLedger>) {
    let mut ticker = tokio::time::interval(WATCH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(ledger) = ledger.upgrade() else {
            return;
        };
        if let Err(why) = ledger.probe_once().await {
            tracing::debug!(error = %why, "risk ledger probe: Redis did not answer");
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
                return Ok(evaluate(order, &SymbolBook::default(), limits));
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

    fn health(&self) -> Result<(), Unhealthy> {
        self.known
            .lock()
            .problem
            .clone()
            .map_or(Ok(()), |why| Err(Unhealthy(why)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_checks_the_layout_a_rebuild_writes() {
        for script in [CHECK_AND_APPLY, PROBE] {
            assert!(script.contains(&format!("if meta[4] ~= '{LAYOUT}' then")));
        }
    }
}
