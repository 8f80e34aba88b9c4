//! The in-process risk ledger: the single-replica adapter of the [`RiskLedger`] port, holding
//! each symbol's book, each desk's notional today and the recent order flow (orders this
//! second, in the repeated-execution latch's window) behind one lock so check-and-apply is
//! atomic. The rules themselves are
//! in [`crate::risk`]. [`UnavailableLedger`] stands in when the books cannot be known (their
//! history is missing): it checks no order, so none is approved against a book read as flat.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

use time::Date;

use crate::ports::{BoxFuture, RiskError, RiskLedger, Unhealthy};
use crate::risk::{Flow, Order, RiskLimits, RiskValidation, SymbolBook, evaluate_with};

/// Positions, order counts and the order flow held in this process: the embedded default.
/// Limits hold for one replica; shared state across replicas needs a shared ledger.
#[derive(Debug, Default)]
pub struct InMemoryRiskLedger {
    // A parking_lot Mutex: the critical section is a few arithmetic operations, never held across an
    // `.await`, and one lock keeps check-and-apply atomic per order.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    books: HashMap<String, SymbolBook>,
    /// Each desk's UTC day and gross notional on it, in cents.
    desks: HashMap<String, DeskDay>,
    /// Approved orders in the current second, per symbol and per desk.
    symbol_rate: HashMap<String, (i64, u64)>,
    desk_rate: HashMap<String, (i64, u64)>,
    /// Each symbol's approved orders in the latch's current window.
    recent: HashMap<String, (i64, u64)>,
}

/// A desk's gross notional on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeskDay {
    pub day: Date,
    pub notional_cents: u64,
}

impl DeskDay {
    /// The notional an order of `day` is checked against (a later day's, when the desk has
    /// moved on: a count never goes back).
    fn on(&self, day: Date) -> u64 {
        if self.day >= day {
            self.notional_cents
        } else {
            0
        }
    }
}

/// A `(window, count)` counter's count as an order of `window` sees it: the counter's when
/// its window is `window` or later, else 0. An order that reaches the ledger after one of a
/// later window counts in that later window (conservative: a window's count never goes back,
/// so no window ever passes its limit).
fn in_window(counter: Option<&(i64, u64)>, window: i64) -> u64 {
    counter.filter(|(w, _)| *w >= window).map_or(0, |(_, n)| *n)
}

/// Count one more order of `window` in `counter` (`(window, orders in it)`) as the ledger
/// counts: a count never goes back, so an order of an earlier window than the counter's counts
/// in the later one. For replaying orders into the same counts (the books' replay).
pub fn count_in_window(counter: &mut (i64, u64), window: i64) {
    let before = in_window(Some(counter), window);
    *counter = (counter.0.max(window), before.saturating_add(1));
}

impl State {
    /// What the flow checks need to know of `order`; `window` is its latch window.
    fn flow(&self, order: &Order<'_>, window: i64) -> Flow {
        Flow {
            desk_notional_cents: self.desks.get(order.desk).map_or(0, |d| d.on(order.day)),
            symbol_this_second: in_window(self.symbol_rate.get(order.symbol), order.second()),
            desk_this_second: in_window(self.desk_rate.get(order.desk), order.second()),
            symbol_in_window: in_window(self.recent.get(order.symbol), window),
        }
    }

    fn apply(&mut self, order: &Order<'_>, flow: &Flow, window: i64) {
        let second = order.second();
        upsert(&mut self.books, order.symbol, SymbolBook::default, |b| {
            b.apply(order)
        });
        self.add_notional(order);
        let counted = |at: i64, n: u64| move |c: &mut (i64, u64)| *c = (c.0.max(at), n + 1);
        let (symbol, desk) = (order.symbol, order.desk);
        let now = counted(second, flow.symbol_this_second);
        upsert(&mut self.symbol_rate, symbol, Default::default, now);
        let now = counted(second, flow.desk_this_second);
        upsert(&mut self.desk_rate, desk, Default::default, now);
        let latch = counted(window, flow.symbol_in_window);
        upsert(&mut self.recent, symbol, Default::default, latch);
    }

    fn add_notional(&mut self, order: &Order<'_>) {
        let (day, cents) = (order.day, order.notional_cents());
        let fresh = || DeskDay {
            day,
            notional_cents: 0,
        };
        upsert(&mut self.desks, order.desk, fresh, |d| {
            let before = d.on(day);
            *d = DeskDay {
                day: d.day.max(day),
                notional_cents: before.saturating_add(cents),
            };
        });
    }
}

/// Change `map[key]` with `change`, inserting `new()` first when absent (the key is copied
/// only then: the request path allocates nothing for a symbol or desk it has seen).
fn upsert<V>(
    map: &mut HashMap<String, V>,
    key: &str,
    new: impl FnOnce() -> V,
    change: impl FnOnce(&mut V),
) {
    match map.get_mut(key) {
        Some(v) => change(v),
        None => change(map.entry(key.to_owned()).or_insert_with(new)),
    }
}

impl InMemoryRiskLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record an order approved before a restart (rebuilding the books from the audit log),
    /// without checking it again.
    pub fn restore(&self, order: &Order<'_>) {
        let mut state = self.state.lock();
        state
            .books
            .entry(order.symbol.to_owned())
            .or_default()
            .apply(order);
        state.add_notional(order);
    }

    /// Start from `books` and `desks` (a checkpoint), replacing whatever was held.
    pub fn load(
        &self,
        books: impl IntoIterator<Item = (String, SymbolBook)>,
        desks: impl IntoIterator<Item = (String, DeskDay)>,
    ) {
        let mut state = self.state.lock();
        state.books = books.into_iter().collect();
        state.desks = desks.into_iter().collect();
    }

    /// Start the repeated-execution latch from `counts` (`symbol → (window, approved orders
    /// in it)`, windows as [`Order::latch_window`] numbers them), replacing what was held.
    pub fn load_latch(&self, counts: impl IntoIterator<Item = (String, (i64, u64))>) {
        let mut state = self.state.lock();
        state.recent = counts.into_iter().collect();
    }

    /// A copy of every symbol's book.
    pub fn books(&self) -> BTreeMap<String, SymbolBook> {
        let state = self.state.lock();
        state.books.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// A copy of every desk's notional day.
    pub fn desks(&self) -> BTreeMap<String, DeskDay> {
        let state = self.state.lock();
        state.desks.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// A copy of one symbol's book.
    pub fn book(&self, symbol: &str) -> SymbolBook {
        let state = self.state.lock();
        state.books.get(symbol).copied().unwrap_or_default()
    }

    fn check_and_apply_now(&self, order: &Order<'_>, limits: &RiskLimits) -> RiskValidation {
        let window = order.latch_window(limits);
        let mut state = self.state.lock();
        let flow = state.flow(order, window);
        let book = state.books.get(order.symbol).copied().unwrap_or_default();
        let validation = evaluate_with(order, &book, &flow, limits);
        if validation.approved && !order.is_inert() {
            state.apply(order, &flow, window);
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

    /// Undoes the position, the day's count and the desk's notional; the rate and the latch
    /// keep counting the order (conservative: a limit is never reopened by an undo).
    fn revert<'a>(&'a self, order: &'a Order<'a>) -> BoxFuture<'a, ()> {
        let mut state = self.state.lock();
        if let Some(book) = state.books.get_mut(order.symbol) {
            book.unapply(order);
        }
        if let Some(d) = state.desks.get_mut(order.desk)
            && d.day == order.day
        {
            d.notional_cents = d.notional_cents.saturating_sub(order.notional_cents());
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

    fn health(&self) -> Result<(), Unhealthy> {
        Err(Unhealthy(self.reason.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::CheckStatus;
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

    fn at(symbol: &'static str, desk: &'static str, ms: i64) -> Order<'static> {
        Order {
            symbol,
            desk,
            at_ms: ms,
            ..order(Action::Buy, 10, 10.0)
        }
    }

    fn check(ledger: &InMemoryRiskLedger, o: &Order<'_>, l: &RiskLimits) -> RiskValidation {
        ledger.check_and_apply_now(o, l)
    }

    /// Position limits out of reach; the flow's limits low.
    fn flow_limits() -> RiskLimits {
        RiskLimits {
            max_daily_orders: 1000,
            max_position_shares: 1_000_000,
            max_position_notional: 1e12,
            max_concentration: 1.0,
            portfolio_capital: 1e15,
            max_order_quantity: std::num::NonZeroU64::new(500).unwrap(),
            desk_daily_notional: 20_000.0,
            max_orders_per_second_symbol: std::num::NonZeroU64::new(5).unwrap(),
            max_orders_per_second_desk: std::num::NonZeroU64::new(8).unwrap(),
            repeated_execution_max: std::num::NonZeroU64::new(20).unwrap(),
            ..limits()
        }
    }

    #[test]
    fn order_rate_counts_approved_orders_per_second_per_symbol_and_per_desk() {
        let (ledger, l) = (InMemoryRiskLedger::new(), flow_limits());
        let t = 1_761_000_000_000;
        // Five a second on one symbol (desk limit 8).
        for i in 0..5 {
            assert!(check(&ledger, &at("AAPL", "d1", t + i), &l).approved);
        }
        let v = check(&ledger, &at("AAPL", "d1", t + 999), &l);
        assert_eq!(v.checks.order_rate, CheckStatus::Fail, "{v:?}");
        // The next second starts again; another symbol has its own count, not the desk's.
        assert!(check(&ledger, &at("AAPL", "d1", t + 1000), &l).approved);
        for i in 0..2 {
            assert!(check(&ledger, &at("MSFT", "d1", t + 1001 + i), &l).approved);
        }
        // The desk's eight a second: three so far, five more on other symbols, then no more.
        for s in ["NVDA", "AMZN", "SPY", "TSLA", "META"] {
            assert!(check(&ledger, &at(s, "d1", t + 1500), &l).approved, "{s}");
        }
        let v = check(&ledger, &at("GOOG", "d1", t + 1500), &l);
        assert_eq!(v.checks.order_rate, CheckStatus::Fail, "{v:?}");
        // A desk with its own limit.
        let mut own = at("QQQ", "d2", t + 1500);
        own.desk_limits.orders_per_second = Some(1);
        assert!(check(&ledger, &own, &l).approved);
        own.symbol = "IWM";
        assert_eq!(
            check(&ledger, &own, &l).checks.order_rate,
            CheckStatus::Fail
        );
    }

    #[test]
    fn desk_daily_notional_and_order_quantity_hold_and_undo() {
        let (ledger, l) = (InMemoryRiskLedger::new(), flow_limits());
        let mut o = at("AAPL", "d1", 1_761_000_000_000);
        o.quantity = 500;
        o.price = 10.0;
        // $5,000 each: four fill the desk's $20,000.
        for i in 0..4 {
            o.at_ms += 1000 * i;
            assert!(check(&ledger, &o, &l).approved);
        }
        o.at_ms += 10_000;
        let v = check(&ledger, &o, &l);
        assert_eq!(v.checks.desk_daily_notional, CheckStatus::Fail, "{v:?}");
        // Another desk trades; an undone order gives its notional back.
        let other = Order {
            desk: "d2",
            ..o.clone()
        };
        assert!(check(&ledger, &other, &l).approved);
        let mut small = o.clone();
        small.quantity = 1;
        // The in-memory revert is done when called; its future is ready.
        drop(ledger.revert(&o));
        drop(ledger.revert(&o));
        assert!(check(&ledger, &o, &l).approved);
        // 501 shares: over max_order_quantity whatever the notional.
        let big = Order {
            quantity: 501,
            price: 0.01,
            desk: "d3",
            ..o
        };
        let v = check(&ledger, &big, &l);
        assert_eq!(
            (v.approved, v.checks.order_quantity),
            (false, CheckStatus::Fail)
        );
        assert!(
            check(
                &ledger,
                &Order {
                    desk: "d3",
                    ..small
                },
                &l
            )
            .approved
        );
    }

    #[test]
    fn an_order_of_an_earlier_second_or_day_never_resets_a_later_count() {
        // Five a second on a symbol: four orders of second t+1 are applied, then one of
        // second t (its request arrived first but reached the ledger last). It counts in t+1,
        // which is then full; before, it reset the count to t's and t+1 took five more.
        let (ledger, l) = (InMemoryRiskLedger::new(), flow_limits());
        let t = 1_761_000_000_000;
        for i in 0..4 {
            assert!(check(&ledger, &at("AAPL", "d1", t + 1000 + i), &l).approved);
        }
        assert!(check(&ledger, &at("AAPL", "d1", t + 10), &l).approved);
        let v = check(&ledger, &at("AAPL", "d1", t + 1500), &l);
        assert_eq!(v.checks.order_rate, CheckStatus::Fail, "{v:?}");
        // The daily count: an order of yesterday applied after today's counts today.
        let daily = RiskLimits {
            max_daily_orders: 2,
            ..flow_limits()
        };
        let today = at("MSFT", "d2", t + 5000);
        let yesterday = Order {
            day: today.day.previous_day().unwrap_or(today.day),
            ..today.clone()
        };
        assert!(check(&ledger, &today, &daily).approved);
        assert!(check(&ledger, &yesterday, &daily).approved);
        let v = check(&ledger, &at("MSFT", "d2", t + 6000), &daily);
        assert!(!v.approved, "today's third order: {v:?}");
    }

    #[test]
    fn a_loaded_latch_count_carries_on_in_its_window_and_not_in_the_next() {
        let (ledger, mut l) = (InMemoryRiskLedger::new(), flow_limits());
        l.desk_daily_notional = 1e12;
        let t = 1_761_000_000_000;
        let window = at("AAPL", "d1", t).latch_window(&l);
        // 20 already approved in this window before a restart: the next one trips the latch.
        ledger.load_latch([("AAPL".to_owned(), (window, 20))]);
        let v = check(&ledger, &at("AAPL", "d1", t + 1_000), &l);
        assert_eq!(v.checks.repeated_execution, CheckStatus::Fail, "{v:?}");
        // A count of an earlier window does not count in this one.
        ledger.load_latch([("AAPL".to_owned(), (window - 1, 20))]);
        assert!(check(&ledger, &at("AAPL", "d1", t + 1_000), &l).approved);
    }

    #[test]
    fn the_latch_refuses_the_order_past_its_window_count() {
        let (ledger, mut l) = (InMemoryRiskLedger::new(), flow_limits());
        l.desk_daily_notional = 1e12;
        let t = 1_761_000_000_000;
        // `t` starts a 60 s window: 20 approved in it (4 a second, under the rate), the 21st
        // trips the latch.
        for i in 0..20 {
            assert!(check(&ledger, &at("AAPL", "d1", t + 250 * i), &l).approved);
        }
        let v = check(&ledger, &at("AAPL", "d1", t + 30_000), &l);
        assert_eq!(v.checks.repeated_execution, CheckStatus::Fail);
        assert!(
            v.warnings
                .iter()
                .any(|w| w.contains("the symbol is halted")),
            "{v:?}"
        );
        // The next window starts empty.
        assert!(check(&ledger, &at("AAPL", "d1", t + 60_001), &l).approved);
    }
}
