//! Writing a rebuilt shared risk ledger: the fleet's books and desk notionals (summed by the
//! caller from every replica's records) under a new generation, in one transaction, so every
//! replica takes them at its next order ([`crate::risk_ledger`]). A live ledger (a generation,
//! not marked lost) is replaced only with `replace`: it is first marked lost, which stops every
//! replica's orders, so none is applied between reading the keys and writing the rebuilt ones.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tradeserve_core::risk::SymbolBook;

use crate::RedisError;
use crate::risk_ledger::RedisRiskLedger;

/// Where the ledger is: URL, key prefix, and the deadline of a call (at least 5 s here: a
/// rebuild is an operator's command, not a request).
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub url: &'a str,
    pub prefix: &'a str,
    pub timeout: Duration,
}

/// What the ledger is rebuilt to: each symbol's book, and each desk's day and notional
/// (cents) on it.
#[derive(Debug, Clone, Default)]
pub struct Rebuilt {
    pub books: BTreeMap<String, SymbolBook>,
    pub desks: BTreeMap<String, (time::Date, u64)>,
    /// Each symbol's repeated-execution latch count: its window (as the ledger numbers them)
    /// and the fleet's approved orders in it.
    pub latch: BTreeMap<String, (i64, u64)>,
}

/// Who rebuilds, and why (kept in the ledger's hash).
#[derive(Debug, Clone, Serialize)]
pub struct Rebuild {
    pub by: String,
    pub reason: String,
    /// Replace a live ledger (stopping the fleet's orders while it is written).
    pub replace: bool,
}

/// Why a rebuild wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("Redis: {0}")]
    Redis(RedisError),
    #[error(
        "the shared ledger is live (generation {0}); pass --replace to rebuild it anyway \
         (every replica refuses risk-checked orders while it is written)"
    )]
    Live(String),
}

impl From<RedisError> for RebuildError {
    fn from(e: RedisError) -> RebuildError {
        RebuildError::Redis(e)
    }
}

impl From<redis::RedisError> for RebuildError {
    fn from(e: redis::RedisError) -> RebuildError {
        RebuildError::Redis(RedisError::Command(e))
    }
}

/// A Redis hash's fields and values.
pub type Fields = BTreeMap<String, String>;

/// The ledger's hash as Redis holds it (`generation`, `seq`, `rebuilt_at`, `rebuilt_by`,
/// `reason`, `lost`); empty when it has none.
pub async fn ledger_state(at: &Target<'_>) -> Result<Fields, RebuildError> {
    let mut conn = connect(at).await?;
    Ok(redis::cmd("HGETALL")
        .arg(RedisRiskLedger::ledger_key(at.prefix))
        .query_async(&mut conn)
        .await?)
}

async fn connect(at: &Target<'_>) -> Result<redis::aio::MultiplexedConnection, RedisError> {
    let client = redis::Client::open(at.url).map_err(|e| RedisError::Url(e.to_string()))?;
    let within = at.timeout.max(Duration::from_secs(5));
    tokio::time::timeout(within, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| RedisError::ConnectTimeout(within))?
        .map_err(RedisError::Command)
}

/// Write `books` as the ledger, with a new generation; returns the ledger's hash as written.
pub async fn write(
    at: &Target<'_>,
    fleet: &Rebuilt,
    rebuild: &Rebuild,
) -> Result<Fields, RebuildError> {
    let prefix = at.prefix;
    let ledger = RedisRiskLedger::ledger_key(prefix);
    let state = ledger_state(at).await?;
    let mut conn = connect(at).await?;
    if state.contains_key("generation") && !state.contains_key("lost") {
        if !rebuild.replace {
            return Err(RebuildError::Live(state["generation"].clone()));
        }
        let why = format!("being rebuilt by {}: {}", rebuild.by, rebuild.reason);
        redis::cmd("HSET")
            .arg(&ledger)
            .arg("lost")
            .arg(why)
            .query_async::<()>(&mut conn)
            .await?;
    }
    let mut stale = book_keys(&mut conn, &format!("{prefix}:risk:*")).await?;
    // The desks' own hashes of the older layout (their counts now live in the ledger hash).
    stale.extend(book_keys(&mut conn, &format!("{prefix}:desk:*")).await?);
    let hash = ledger_hash(rebuild);
    let mut tx = redis::pipe();
    tx.atomic();
    for key in &stale {
        tx.del(key).ignore();
    }
    for (symbol, book) in &fleet.books {
        let mut fields = book_fields(book);
        if let Some((window, n)) = fleet.latch.get(symbol) {
            fields.push(("win", window.to_string()));
            fields.push(("win_n", n.to_string()));
        }
        tx.hset_multiple(format!("{prefix}:risk:{symbol}"), &fields)
            .ignore();
    }
    tx.del(&ledger).ignore();
    let mut fields: Vec<(String, String)> = hash.clone().into_iter().collect();
    for (desk, d) in &fleet.desks {
        let field = |count| RedisRiskLedger::desk_field(desk, count);
        fields.push((field("day"), d.0.to_string()));
        fields.push((field("notional"), d.1.to_string()));
    }
    tx.hset_multiple(&ledger, &fields).ignore();
    tx.query_async::<()>(&mut conn).await?;
    Ok(hash)
}

/// Every key matching `pattern` (the books, `<prefix>:risk:*`; the older desk hashes).
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

fn book_fields(book: &SymbolBook) -> Vec<(&'static str, String)> {
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
        ("layout".into(), crate::risk_ledger::LAYOUT.into()),
        ("rebuilt_at".into(), at),
        ("rebuilt_by".into(), rebuild.by.clone()),
        ("reason".into(), rebuild.reason.clone()),
    ])
}
