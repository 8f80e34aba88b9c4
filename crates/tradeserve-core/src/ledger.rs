//! The in-process risk ledger: the single-replica adapter of the [`RiskLedger`] port, holding
//! each symbol's book behind one lock so check-and-apply is atomic. The rules themselves are
//! in [`crate::risk`]. [`UnavailableLedger`] stands in when the books cannot be known (their
//! history is missing): it checks no order, so none is approved against a book read as flat.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::ports::{BoxFuture, RiskError, RiskLedger};
use crate::risk::{Order, RiskLimits, RiskValidation, SymbolBook, evaluate};

/// Positions and order counts held in this process: the embedded default. Limits hold for
/// one replica; shared state across replicas needs a shared ledger.
#[derive(Debug, Default)]
pub struct InMemoryRiskLedger {
    // A std Mutex: the critical section is a few arithmetic operations, never held across an
    // `.await`, and one map lock keeps check-and-apply atomic per order.
    books: Mutex<HashMap<String, SymbolBook>>,
}

impl InMemoryRiskLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record an order approved before a restart (rebuilding the books from the audit log),
    /// without checking it again.
    pub fn restore(&self, order: &Order<'_>) {
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books
            .entry(order.symbol.to_owned())
            .or_default()
            .apply(order);
    }

    /// Start from `books` (a checkpoint), replacing whatever was held.
    pub fn load(&self, books: impl IntoIterator<Item = (String, SymbolBook)>) {
        let mut held = self.books.lock().unwrap_or_else(|e| e.into_inner());
        *held = books.into_iter().collect();
    }

    /// A copy of every symbol's book.
    pub fn books(&self) -> BTreeMap<String, SymbolBook> {
        let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// A copy of one symbol's book.
    pub fn book(&self, symbol: &str) -> SymbolBook {
        let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books.get(symbol).copied().unwrap_or_default()
    }

    fn check_and_apply_now(&self, order: &Order<'_>, limits: &RiskLimits) -> RiskValidation {
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        let book = books.entry(order.symbol.to_owned()).or_default();
        let validation = evaluate(order, book, limits);
        if validation.approved {
            book.apply(order);
        }
        validation
    }
}

impl RiskLedger for InMemoryRiskLedger {
    fn check_and_apply<'a>(
        &'a self,
        order: &'a Order<'a>,
        limits: &'a RiskLimits,
    ) -> BoxFuture<'a, Result<RiskValidation, RiskError>> {
        Box::pin(std::future::ready(Ok(
            self.check_and_apply_now(order, limits)
        )))
    }

    fn revert<'a>(&'a self, order: &'a Order<'a>) -> BoxFuture<'a, ()> {
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(book) = books.get_mut(order.symbol) {
            book.unapply(order);
        }
        Box::pin(std::future::ready(()))
    }
}

/// A ledger whose books are unknown: every order is refused as `Unavailable` (503
/// `risk_unavailable`) and readiness says why, until an operator reconciles the books.
#[derive(Debug)]
pub struct UnavailableLedger {
    reason: String,
}

impl UnavailableLedger {
    pub fn new(reason: impl Into<String>) -> UnavailableLedger {
        UnavailableLedger {
            reason: reason.into(),
        }
    }
}

impl RiskLedger for UnavailableLedger {
    fn check_and_apply<'a>(
        &'a self,
        _: &'a Order<'a>,
        _: &'a RiskLimits,
    ) -> BoxFuture<'a, Result<RiskValidation, RiskError>> {
        Box::pin(std::future::ready(Err(RiskError::Unavailable(
            self.reason.clone(),
        ))))
    }

    fn revert<'a>(&'a self, _: &'a Order<'a>) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    fn health(&self) -> Result<(), String> {
        Err(self.reason.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::fixtures::{limits, order};
    use crate::types::Action;

    #[test]
    fn ledger_applies_only_approved_orders() {
        let ledger = InMemoryRiskLedger::new();
        let l = limits();
        for _ in 0..9 {
            assert!(
                ledger
                    .check_and_apply_now(&order(Action::Buy, 100, 10.0), &l)
                    .approved
            );
        }
        // 1000 shares reached: the next buy would be 1100.
        assert!(
            !ledger
                .check_and_apply_now(&order(Action::Buy, 200, 10.0), &l)
                .approved
        );
        assert_eq!(ledger.book("AAPL").position, 900);
        assert_eq!(ledger.book("AAPL").orders_today, 9);
        let halted = Order {
            halt: Some("halt-1"),
            ..order(Action::Sell, 100, 10.0)
        };
        assert!(!ledger.check_and_apply_now(&halted, &l).approved);
        assert_eq!(ledger.book("AAPL").position, 900);
        assert!(
            ledger
                .check_and_apply_now(&order(Action::Sell, 100, 10.0), &l)
                .approved
        );
        assert_eq!(ledger.book("AAPL").position, 800);
    }
}
