//! Rebuilding the shared risk ledger (`[ledger] store = "redis"`) from the fleet's records:
//! every replica's audit log replayed into books and desk notionals ([`crate::risk_books`])
//! and summed, then
//! written to Redis with a new generation in one transaction (`tradeserve risk
//! rebuild-shared`). Until a ledger has a generation, every replica refuses risk-checked orders
//! ([`crate::risk_redis`]): a new deployment starts with `--flat` (no orders yet); a ledger
//! that lost its data is rebuilt from the audit logs, never re-counted from zero.
//!
//! A live ledger (a generation, not marked lost) is replaced only with `replace`: the ledger is
//! first marked lost, which stops every replica's orders, so none is applied between reading the
//! keys and writing the rebuilt ones.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tradeserve_events::chain::ChainKey;

use crate::risk_books::{self, Book, Covers, Desk, Missing};
use crate::risk_redis::{LedgerConfig, RedisRiskLedger};

/// What one replica's audit log gave.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub audit_log: PathBuf,
    pub checkpoint: Option<Covers>,
    pub files: usize,
    pub lines: u64,
    pub orders: u64,
    pub books: BTreeMap<String, Book>,
    pub desks: BTreeMap<String, Desk>,
}

/// The fleet's books: each audit log's, summed per symbol, and each desk's notional, summed
/// per desk (on the latest day).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetBooks {
    pub books: BTreeMap<String, Book>,
    pub desks: BTreeMap<String, Desk>,
    pub sources: Vec<Source>,
}

/// Replay each replica's audit log (checkpoint and all) and sum the books. Any log whose
/// history is missing stops the rebuild: reconcile that replica's log first.
pub fn fleet_books(logs: &[PathBuf], key: Option<&ChainKey>) -> Result<FleetBooks, Missing> {
    let mut fleet = FleetBooks::default();
    for log in logs {
        let r = risk_books::replay(log, key, true)
            .map_err(|m| Missing(format!("{}: {}", log.display(), m.0)))?;
        for (symbol, book) in &r.books {
            add(fleet.books.entry(symbol.clone()).or_insert(EMPTY), book);
        }
        for (desk, d) in &r.desks {
            use std::collections::btree_map::Entry;
            match fleet.desks.entry(desk.clone()) {
                Entry::Vacant(v) => {
                    v.insert(*d);
                }
                Entry::Occupied(mut o) => {
                    let total = o.get_mut();
                    match d.day.cmp(&total.day) {
                        std::cmp::Ordering::Greater => *total = *d,
                        std::cmp::Ordering::Equal => total.notional_cents += d.notional_cents,
                        std::cmp::Ordering::Less => {}
                    }
                }
            }
        }
        fleet.sources.push(Source {
            audit_log: log.clone(),
            checkpoint: r.checkpoint,
            files: r.files,
            lines: r.lines,
            orders: r.orders,
            books: r.books,
            desks: r.desks,
        });
    }
    Ok(fleet)
}

const EMPTY: Book = Book {
    position: 0,
    day: None,
    orders_today: 0,
};

/// Positions add up; the day's order count is the sum over the books on the latest day.
fn add(total: &mut Book, b: &Book) {
    total.position += b.position;
    match (total.day, b.day) {
        (_, None) => {}
        (Some(t), Some(d)) if d == t => total.orders_today += b.orders_today,
        (Some(t), Some(d)) if d < t => {}
        (_, Some(d)) => {
            total.day = Some(d);
            total.orders_today = b.orders_today;
        }
    }
}

/// Who rebuilds, and why (kept in the ledger's hash).
#[derive(Debug, Clone, Serialize)]
pub struct Rebuild {
    pub by: String,
    pub reason: String,
    /// Replace a live ledger (stopping the fleet's orders while it is written).
    pub replace: bool,
}

/// The ledger's hash as Redis holds it (`generation`, `seq`, `rebuilt_at`, `rebuilt_by`,
/// `reason`, `lost`); empty when it has none.
pub async fn ledger_state(config: &LedgerConfig) -> Result<HashMap<String, String>, String> {
    let mut conn = connect(config).await?;
    redis::cmd("HGETALL")
        .arg(RedisRiskLedger::ledger_key(&config.redis_prefix))
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("Redis: {e}"))
}

async fn connect(config: &LedgerConfig) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| format!("ledger.redis_url: {e}"))?;
    let within = config.timeout.max(Duration::from_secs(5));
    tokio::time::timeout(within, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("Redis: no connection within {within:?}"))?
        .map_err(|e| format!("Redis: {e}"))
}

/// Write `books` as the ledger, with a new generation; returns the ledger's hash as written.
pub async fn write(
    config: &LedgerConfig,
    fleet: &FleetBooks,
    rebuild: &Rebuild,
) -> Result<BTreeMap<String, String>, String> {
    let prefix = &config.redis_prefix;
    let ledger = RedisRiskLedger::ledger_key(prefix);
    let state = ledger_state(config).await?;
    let mut conn = connect(config).await?;
    let redis_err = |e: redis::RedisError| format!("Redis: {e}");
    if state.contains_key("generation") && !state.contains_key("lost") {
        if !rebuild.replace {
            return Err(format!(
                "the shared ledger is live (generation {}); pass --replace to rebuild it anyway \
                 (every replica refuses risk-checked orders while it is written)",
                state["generation"]
            ));
        }
        let why = format!("being rebuilt by {}: {}", rebuild.by, rebuild.reason);
        redis::cmd("HSET")
            .arg(&ledger)
            .arg("lost")
            .arg(why)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)?;
    }
    let mut stale = book_keys(&mut conn, &format!("{prefix}:risk:*"))
        .await
        .map_err(redis_err)?;
    stale.extend(
        book_keys(&mut conn, &format!("{prefix}:desk:*"))
            .await
            .map_err(redis_err)?,
    );
    let hash = ledger_hash(rebuild);
    let mut tx = redis::pipe();
    tx.atomic();
    for key in &stale {
        tx.del(key).ignore();
    }
    for (symbol, book) in &fleet.books {
        tx.hset_multiple(format!("{prefix}:risk:{symbol}"), &book_fields(book))
            .ignore();
    }
    for (desk, d) in &fleet.desks {
        let fields = [
            ("day", d.day.to_string()),
            ("notional", d.notional_cents.to_string()),
        ];
        tx.hset_multiple(format!("{prefix}:desk:{desk}"), &fields)
            .ignore();
    }
    tx.del(&ledger).ignore();
    let fields: Vec<(&String, &String)> = hash.iter().collect();
    tx.hset_multiple(&ledger, &fields).ignore();
    tx.query_async::<()>(&mut conn).await.map_err(redis_err)?;
    Ok(hash)
}

/// Every key matching `pattern` (the books, `<prefix>:risk:*`; the desks, `<prefix>:desk:*`).
async fn book_keys(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

fn book_fields(book: &Book) -> Vec<(&'static str, String)> {
    let mut fields = vec![("position", book.position.to_string())];
    if let Some(day) = book.day {
        fields.push(("day", day.to_string()));
        fields.push(("orders", book.orders_today.to_string()));
    }
    fields
}

fn ledger_hash(rebuild: &Rebuild) -> BTreeMap<String, String> {
    let at = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    BTreeMap::from([
        ("generation".into(), uuid::Uuid::now_v7().to_string()),
        ("seq".into(), "0".into()),
        ("rebuilt_at".into(), at),
        ("rebuilt_by".into(), rebuild.by.clone()),
        ("reason".into(), rebuild.reason.clone()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(position: i64, day: Option<u8>, orders_today: u64) -> Book {
        Book {
            position,
            day: day.map(|d| {
                time::Date::from_calendar_date(2025, time::Month::October, d)
                    .unwrap_or(time::Date::MIN)
            }),
            orders_today,
        }
    }

    #[test]
    fn positions_add_and_only_the_latest_days_orders_count() {
        let mut total = EMPTY;
        for b in [
            book(100, Some(14), 3),
            book(-40, Some(15), 2),
            book(10, None, 0),
            book(5, Some(15), 1),
            book(7, Some(13), 9),
        ] {
            add(&mut total, &b);
        }
        assert_eq!(total, book(82, Some(15), 3));
    }
}
