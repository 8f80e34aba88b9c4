//! Rebuilding the shared risk ledger (`[ledger] store = "redis"`) from the fleet's records:
//! every replica's audit log replayed into books and desk notionals ([`tradeserve_events::books`])
//! and summed here, then written to Redis with a new generation in one transaction
//! ([`tradeserve_redis::rebuild`]; `tradeserve risk rebuild-shared`). Until a ledger has a generation, every replica refuses risk-checked orders
//! ([`tradeserve_redis::risk_ledger`]): a new deployment starts with `--flat` (no orders yet); a ledger
//! that lost its data is rebuilt from the audit logs, never re-counted from zero.
//!
//! A live ledger (a generation, not marked lost) is replaced only with `replace`: the ledger is
//! first marked lost, which stops every replica's orders, so none is applied between reading the
//! keys and writing the rebuilt ones.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use tradeserve_core::risk::SymbolBook;
use tradeserve_events::chain::ChainKey;
use tradeserve_redis::rebuild::Rebuilt;

use tradeserve_events::books::{self, Book, Covers, Desk, Missing};

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
    /// Each symbol's latch count: `(window, approved orders)`, summed over the logs whose
    /// count is of the latest window.
    pub latch: BTreeMap<String, (i64, u64)>,
    pub sources: Vec<Source>,
}

/// Replay each replica's audit log (checkpoint and all) and sum the books, and the latch's
/// counts in windows of `window`. Any log whose history is missing stops the rebuild:
/// reconcile that replica's log first.
pub fn fleet_books(
    logs: &[PathBuf],
    key: Option<&ChainKey>,
    window: std::time::Duration,
) -> Result<FleetBooks, Missing> {
    let mut fleet = FleetBooks::default();
    for log in logs {
        let r = books::replay_latched(log, key, true, window)
            .map_err(|m| Missing(format!("{}: {}", log.display(), m.0)))?;
        for (symbol, c) in r.latch.iter().flat_map(|l| &l.symbols) {
            add_latch(fleet.latch.entry(symbol.clone()).or_insert((c.0, 0)), *c);
        }
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

/// The latch's counts add up in the latest window; a log's count of an earlier window is over.
fn add_latch(total: &mut (i64, u64), c: (i64, u64)) {
    match c.0.cmp(&total.0) {
        std::cmp::Ordering::Greater => *total = c,
        std::cmp::Ordering::Equal => total.1 = total.1.saturating_add(c.1),
        std::cmp::Ordering::Less => {}
    }
}

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

/// The fleet's books as the shared ledger takes them.
pub fn rebuilt(fleet: &FleetBooks) -> Rebuilt {
    Rebuilt {
        books: fleet
            .books
            .iter()
            .map(|(symbol, b)| {
                let book = SymbolBook {
                    position: b.position,
                    orders_today: b.orders_today,
                    day: b.day,
                };
                (symbol.clone(), book)
            })
            .collect(),
        desks: fleet
            .desks
            .iter()
            .map(|(desk, d)| (desk.clone(), (d.day, d.notional_cents)))
            .collect(),
        latch: fleet.latch.clone(),
    }
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

    #[test]
    fn latch_counts_add_in_the_latest_window_only() {
        let mut total = (0, 0);
        for c in [(7, 4), (7, 3), (6, 9), (8, 1), (8, 2), (7, 5)] {
            add_latch(&mut total, c);
        }
        assert_eq!(total, (8, 3));
    }
}
