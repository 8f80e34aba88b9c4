//! Rebuilding the in-process risk books at start from the audit log, so a crash or restart
//! does not reset positions and daily order counts (a crash loop must not bypass a limit).
//!
//! Every approved, risk-checked decision in the retained audit files is applied again, in
//! order, with its own UTC day: the books end as they were when the process stopped. Files
//! deleted by retention are not seen (see `events.audit_retain_files`); a fleet keeps its
//! books in a shared store instead.

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use serde::Deserialize;
use time::OffsetDateTime;
use tradeserve_core::ledger::InMemoryRiskLedger;
use tradeserve_core::risk::Order;
use tradeserve_core::types::Action;

/// What a rebuild read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub files: usize,
    pub lines: u64,
    /// Orders applied to the books.
    pub orders: u64,
    /// Lines that were not a readable event (reported, never fatal).
    pub unreadable: u64,
}

/// Only the fields a risk book needs (absent from control and shadow events): a projection
/// rather than the whole `DecisionEvent`, so a start does not parse every feature map of the
/// retained log.
#[derive(Deserialize)]
struct Line {
    event_type: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    timestamp: Option<OffsetDateTime>,
    #[serde(default)]
    symbol: String,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    quantity: u64,
    #[serde(default)]
    price: f64,
    #[serde(default)]
    approved: bool,
    /// `null` when the request asked for no risk check (the books were not touched).
    #[serde(default)]
    risk_checks: Option<serde::de::IgnoredAny>,
}

/// Apply every approved, risk-checked decision of the audit log at `path` to `ledger`.
pub fn restore(ledger: &InMemoryRiskLedger, path: &Path) -> std::io::Result<Restored> {
    let started = Instant::now();
    let mut r = Restored::default();
    for file in tradeserve_events::audit_log::files(path) {
        r.files += 1;
        let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?);
        for line in reader.split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            r.lines += 1;
            let Ok(e) = serde_json::from_slice::<Line>(&line) else {
                r.unreadable += 1;
                continue;
            };
            let (Some(at), Some(action)) = (e.timestamp, e.action) else {
                continue;
            };
            if e.event_type != "trading_decision" || !e.approved || e.risk_checks.is_none() {
                continue;
            }
            ledger.restore(&Order {
                symbol: &e.symbol,
                action,
                quantity: e.quantity,
                price: e.price,
                day: at.date(),
            });
            r.orders += 1;
        }
    }
    tracing::info!(
        files = r.files,
        lines = r.lines,
        orders = r.orders,
        unreadable = r.unreadable,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "risk books rebuilt from the audit log"
    );
    Ok(r)
}
