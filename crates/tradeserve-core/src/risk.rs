//! Risk limits and the six named checks: the rules, with no state.
//!
//! [`evaluate`] is pure: an order, the symbol's book and the limits in, a [`RiskValidation`]
//! out. A [`RiskLedger`](crate::ports::RiskLedger) does check-and-apply atomically so limits
//! hold under concurrency; [`crate::ledger::InMemoryRiskLedger`] is the single-replica one.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::types::Action;

/// Configurable limits. Notional amounts are in USD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskLimits {
    /// Largest absolute position per symbol after an order, in shares.
    pub max_position_shares: u64,
    /// Largest absolute position per symbol after an order, in USD at the decision price.
    pub max_position_notional: f64,
    /// Largest share of `portfolio_capital` one symbol's position may take.
    pub max_concentration: f64,
    /// Capital the concentration limit is measured against.
    pub portfolio_capital: f64,
    /// Largest single order, in USD.
    pub max_order_notional: f64,
    /// Symbols that may not be traded.
    pub restricted_symbols: Vec<String>,
    /// Orders per symbol per UTC day.
    pub max_daily_orders: u64,
    /// A check warns when its measure exceeds this fraction of the limit.
    pub warn_fraction: f64,
}

impl Default for RiskLimits {
    fn default() -> Self {
        RiskLimits {
            max_position_shares: 50_000,
            max_position_notional: 2_000_000.0,
            max_concentration: 0.10,
            portfolio_capital: 25_000_000.0,
            max_order_notional: 250_000.0,
            restricted_symbols: Vec::new(),
            max_daily_orders: 100_000,
            warn_fraction: 0.8,
        }
    }
}

impl RiskLimits {
    /// Check the limits; the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_position_notional", self.max_position_notional),
            ("portfolio_capital", self.portfolio_capital),
            ("max_order_notional", self.max_order_notional),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("risk.{name} must be a finite number > 0"));
            }
        }
        if !(self.max_concentration > 0.0 && self.max_concentration <= 1.0) {
            return Err("risk.max_concentration must be in (0, 1]".into());
        }
        if !(self.warn_fraction > 0.0 && self.warn_fraction <= 1.0) {
            return Err("risk.warn_fraction must be in (0, 1]".into());
        }
        for s in &self.restricted_symbols {
            if crate::types::Symbol::parse(s).is_err() {
                return Err(format!(
                    "risk.restricted_symbols: {s:?} is not a valid symbol"
                ));
            }
        }
        Ok(())
    }
}

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

/// The six checks, each with its status, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    pub position_limit: CheckStatus,
    pub concentration: CheckStatus,
    pub order_notional: CheckStatus,
    pub restricted_list: CheckStatus,
    pub daily_order_count: CheckStatus,
    pub kill_switch: CheckStatus,
}

impl Checks {
    fn all_pass() -> Checks {
        Checks {
            position_limit: CheckStatus::Pass,
            concentration: CheckStatus::Pass,
            order_notional: CheckStatus::Pass,
            restricted_list: CheckStatus::Pass,
            daily_order_count: CheckStatus::Pass,
            kill_switch: CheckStatus::Pass,
        }
    }

    /// Name and status of every check, in order.
    pub fn iter(&self) -> [(&'static str, CheckStatus); 6] {
        [
            ("position_limit", self.position_limit),
            ("concentration", self.concentration),
            ("order_notional", self.order_notional),
            ("restricted_list", self.restricted_list),
            ("daily_order_count", self.daily_order_count),
            ("kill_switch", self.kill_switch),
        ]
    }
}

/// The `risk_validation` object of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskValidation {
    pub approved: bool,
    pub warnings: Vec<String>,
    pub checks: Checks,
}

/// An order as the risk checks see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Order<'a> {
    pub symbol: &'a str,
    pub action: Action,
    pub quantity: u64,
    pub price: f64,
    /// UTC trading day the daily order count is kept for.
    pub day: Date,
    /// The trading halt covering the order (its id): `kill_switch` fails.
    pub halt: Option<&'a str>,
}

impl Order<'_> {
    fn signed_quantity(&self) -> i64 {
        self.action.direction() * i64::try_from(self.quantity).unwrap_or(i64::MAX)
    }
}

/// What the ledger knows about one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SymbolBook {
    /// Signed position in shares (negative = short).
    pub position: i64,
    /// Approved orders on `day`.
    pub orders_today: u64,
    pub day: Option<Date>,
}

impl SymbolBook {
    fn orders_on(&self, day: Date) -> u64 {
        if self.day == Some(day) {
            self.orders_today
        } else {
            0
        }
    }

    /// Record an approved order.
    pub fn apply(&mut self, order: &Order<'_>) {
        if order.quantity == 0 || order.action == Action::Hold {
            return;
        }
        self.orders_today = self.orders_on(order.day) + 1;
        self.day = Some(order.day);
        self.position = self.position.saturating_add(order.signed_quantity());
    }

    /// Undo [`Self::apply`] of the same order.
    pub fn unapply(&mut self, order: &Order<'_>) {
        if order.quantity == 0 || order.action == Action::Hold {
            return;
        }
        if self.day == Some(order.day) {
            self.orders_today = self.orders_today.saturating_sub(1);
        }
        self.position = self.position.saturating_sub(order.signed_quantity());
    }
}

fn grade(value: f64, limit: f64, warn_fraction: f64) -> CheckStatus {
    if value > limit {
        CheckStatus::Fail
    } else if value > warn_fraction * limit {
        CheckStatus::Warn
    } else {
        CheckStatus::Pass
    }
}

/// Run every check of `order` against the symbol's book.
pub fn evaluate(order: &Order<'_>, book: &SymbolBook, limits: &RiskLimits) -> RiskValidation {
    let mut checks = Checks::all_pass();
    let mut warnings = Vec::new();
    if order.action == Action::Hold || order.quantity == 0 {
        return RiskValidation {
            approved: true,
            warnings,
            checks,
        };
    }
    size_checks(order, book, limits, &mut checks, &mut warnings);
    let w = limits.warn_fraction;
    if limits.restricted_symbols.iter().any(|s| s == order.symbol) {
        checks.restricted_list = CheckStatus::Fail;
        warnings.push(format!("restricted_list: {} is restricted", order.symbol));
    }
    let orders = book.orders_on(order.day) + 1;
    let daily = grade(orders as f64, limits.max_daily_orders as f64, w);
    checks.daily_order_count = noted(daily, &mut warnings, || {
        format!(
            "daily_order_count: order {orders} of {} today",
            limits.max_daily_orders
        )
    });
    if let Some(id) = order.halt {
        checks.kill_switch = CheckStatus::Fail;
        warnings.push(format!("kill_switch: halted by {id}"));
    }
    let approved = checks.iter().iter().all(|(_, s)| *s != CheckStatus::Fail);
    RiskValidation {
        approved,
        warnings,
        checks,
    }
}

/// The checks on the order's size: the position after it (shares and notional), its share of
/// capital, and the order's own notional.
fn size_checks(
    order: &Order<'_>,
    book: &SymbolBook,
    limits: &RiskLimits,
    checks: &mut Checks,
    warnings: &mut Vec<String>,
) {
    let w = limits.warn_fraction;
    let after = book
        .position
        .saturating_add(order.signed_quantity())
        .unsigned_abs();
    let after_notional = after as f64 * order.price;
    let order_notional = order.quantity as f64 * order.price;
    let shares = grade(after as f64, limits.max_position_shares as f64, w);
    let notional = grade(after_notional, limits.max_position_notional, w);
    checks.position_limit = noted(shares.max_severity(notional), warnings, || {
        format!(
            "position_limit: {after} shares (${after_notional:.0}) after the order, limits {} shares / ${:.0}",
            limits.max_position_shares, limits.max_position_notional
        )
    });
    let share = after_notional / limits.portfolio_capital;
    checks.concentration = noted(grade(share, limits.max_concentration, w), warnings, || {
        format!(
            "concentration: {:.1}% of capital after the order, limit {:.1}%",
            share * 100.0,
            limits.max_concentration * 100.0
        )
    });
    let graded = grade(order_notional, limits.max_order_notional, w);
    checks.order_notional = noted(graded, warnings, || {
        format!(
            "order_notional: ${order_notional:.0}, limit ${:.0}",
            limits.max_order_notional
        )
    });
}

/// The largest absolute position after an order at `price` that the position and
/// concentration checks pass: the bound a shared ledger enforces atomically. The same
/// comparisons as [`evaluate`], so both always agree.
pub fn max_abs_position(price: f64, limits: &RiskLimits) -> u64 {
    let passes = |a: u64| {
        let notional = a as f64 * price;
        grade(a as f64, limits.max_position_shares as f64, 1.0) != CheckStatus::Fail
            && grade(notional, limits.max_position_notional, 1.0) != CheckStatus::Fail
            && grade(
                notional / limits.portfolio_capital,
                limits.max_concentration,
                1.0,
            ) != CheckStatus::Fail
    };
    if !passes(0) {
        return 0;
    }
    // passes(lo) holds and passes(hi + 1) does not (nothing above max_position_shares does).
    let (mut lo, mut hi) = (0u64, limits.max_position_shares);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if passes(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// `status`, with its warning noted unless it passes.
fn noted(
    status: CheckStatus,
    warnings: &mut Vec<String>,
    why: impl FnOnce() -> String,
) -> CheckStatus {
    if status != CheckStatus::Pass {
        warnings.push(why());
    }
    status
}

impl CheckStatus {
    fn max_severity(self, other: CheckStatus) -> CheckStatus {
        match (self, other) {
            (CheckStatus::Fail, _) | (_, CheckStatus::Fail) => CheckStatus::Fail,
            (CheckStatus::Warn, _) | (_, CheckStatus::Warn) => CheckStatus::Warn,
            _ => CheckStatus::Pass,
        }
    }
}

#[cfg(test)]
mod bound_tests {
    use super::fixtures::{limits, order};
    use super::*;

    /// The bound agrees with `evaluate` on every size around it, at awkward prices.
    #[test]
    fn the_position_bound_agrees_with_evaluate() {
        let l = limits();
        for price in [
            0.01,
            3.0,
            99.99,
            100.0,
            123.456,
            333.333_333,
            1e-9,
            50_000.0,
        ] {
            let bound = max_abs_position(price, &l);
            for q in bound.saturating_sub(3)..=bound + 3 {
                let v = evaluate(&order(Action::Buy, q, price), &SymbolBook::default(), &l);
                let size_ok = v.checks.position_limit != CheckStatus::Fail
                    && v.checks.concentration != CheckStatus::Fail;
                assert_eq!(
                    size_ok,
                    q <= bound,
                    "price {price}, quantity {q}, bound {bound}"
                );
            }
        }
    }
}

/// Orders and limits the risk and ledger tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use time::macros::date;

    pub const DAY: Date = date!(2025 - 10 - 21);

    pub fn order(action: Action, quantity: u64, price: f64) -> Order<'static> {
        Order {
            symbol: "AAPL",
            action,
            quantity,
            price,
            day: DAY,
            halt: None,
        }
    }

    pub fn limits() -> RiskLimits {
        RiskLimits {
            max_position_shares: 1000,
            max_position_notional: 100_000.0,
            max_concentration: 0.10,
            portfolio_capital: 500_000.0,
            max_order_notional: 50_000.0,
            restricted_symbols: vec!["GME".into()],
            max_daily_orders: 10,
            warn_fraction: 0.8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{DAY, limits, order};
    use super::*;
    use time::macros::date;

    #[test]
    fn hold_passes_everything_even_when_halted() {
        let v = evaluate(
            &Order {
                halt: Some("halt-1"),
                ..order(Action::Hold, 0, 100.0)
            },
            &SymbolBook::default(),
            &limits(),
        );
        assert!(v.approved);
        assert!(v.checks.iter().iter().all(|(_, s)| *s == CheckStatus::Pass));
    }

    #[test]
    fn small_order_passes() {
        let v = evaluate(
            &order(Action::Buy, 100, 100.0),
            &SymbolBook::default(),
            &limits(),
        );
        assert_eq!(
            v,
            RiskValidation {
                approved: true,
                warnings: vec![],
                checks: Checks::all_pass()
            }
        );
    }

    #[test]
    fn position_limit_shares_and_notional() {
        let book = SymbolBook {
            position: 850,
            ..Default::default()
        };
        // 850 + 100 = 950 shares: warn on shares (> 800); notional 950 × 10 = 9.5k passes.
        let v = evaluate(&order(Action::Buy, 100, 10.0), &book, &limits());
        assert!(v.approved);
        assert_eq!(v.checks.position_limit, CheckStatus::Warn);
        assert_eq!(v.warnings.len(), 1);
        // 1050 shares: fail.
        let v = evaluate(&order(Action::Buy, 200, 10.0), &book, &limits());
        assert!(!v.approved);
        assert_eq!(v.checks.position_limit, CheckStatus::Fail);
        // Selling reduces the absolute position and passes.
        let v = evaluate(&order(Action::Sell, 200, 10.0), &book, &limits());
        assert_eq!(v.checks.position_limit, CheckStatus::Pass);
        // Short side counts by absolute value: -850 - 200 = -1050 fails.
        let short = SymbolBook {
            position: -850,
            ..Default::default()
        };
        let v = evaluate(&order(Action::Sell, 200, 10.0), &short, &limits());
        assert_eq!(v.checks.position_limit, CheckStatus::Fail);
        // Notional: 500 shares at $210 = $105k > $100k.
        let v = evaluate(
            &order(Action::Buy, 200, 210.0),
            &SymbolBook {
                position: 300,
                ..Default::default()
            },
            &limits(),
        );
        assert_eq!(v.checks.position_limit, CheckStatus::Fail);
    }

    #[test]
    fn concentration_against_capital() {
        // 450 shares × $100 = $45k = 9% of $500k: warn (> 8%).
        let v = evaluate(
            &order(Action::Buy, 450, 100.0),
            &SymbolBook::default(),
            &limits(),
        );
        assert_eq!(v.checks.concentration, CheckStatus::Warn);
        assert!(v.approved);
        let v = evaluate(
            &order(Action::Buy, 100, 100.0),
            &SymbolBook {
                position: 450,
                ..Default::default()
            },
            &limits(),
        );
        assert_eq!(v.checks.concentration, CheckStatus::Fail);
        assert!(!v.approved);
    }

    #[test]
    fn order_notional() {
        let v = evaluate(
            &order(Action::Sell, 450, 100.0),
            &SymbolBook::default(),
            &limits(),
        );
        assert_eq!(v.checks.order_notional, CheckStatus::Warn);
        let v = evaluate(
            &order(Action::Sell, 510, 100.0),
            &SymbolBook::default(),
            &limits(),
        );
        assert_eq!(v.checks.order_notional, CheckStatus::Fail);
        assert!(!v.approved);
    }

    #[test]
    fn restricted_list_and_a_halt_fail() {
        let o = Order {
            symbol: "GME",
            ..order(Action::Buy, 10, 10.0)
        };
        let v = evaluate(&o, &SymbolBook::default(), &limits());
        assert_eq!(v.checks.restricted_list, CheckStatus::Fail);
        assert!(!v.approved);
        let halted = Order {
            halt: Some("halt-1"),
            ..order(Action::Buy, 10, 10.0)
        };
        let v = evaluate(&halted, &SymbolBook::default(), &limits());
        assert_eq!(v.checks.kill_switch, CheckStatus::Fail);
        assert!(!v.approved);
        assert_eq!(v.warnings, vec!["kill_switch: halted by halt-1".to_owned()]);
    }

    #[test]
    fn daily_order_count_resets_each_day() {
        let book = SymbolBook {
            position: 0,
            orders_today: 10,
            day: Some(DAY),
        };
        let v = evaluate(&order(Action::Buy, 1, 1.0), &book, &limits());
        assert_eq!(v.checks.daily_order_count, CheckStatus::Fail);
        let next = Order {
            day: date!(2025 - 10 - 22),
            ..order(Action::Buy, 1, 1.0)
        };
        let v = evaluate(&next, &book, &limits());
        assert_eq!(v.checks.daily_order_count, CheckStatus::Pass);
        let mut book = book;
        book.apply(&next);
        assert_eq!(
            (book.orders_today, book.day, book.position),
            (1, Some(date!(2025 - 10 - 22)), 1)
        );
    }

    #[test]
    fn limits_validation() {
        assert!(RiskLimits::default().validate().is_ok());
        let bad = RiskLimits {
            max_concentration: 1.5,
            ..RiskLimits::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_concentration"));
        let bad = RiskLimits {
            restricted_symbols: vec!["bad sym".into()],
            ..RiskLimits::default()
        };
        assert!(bad.validate().unwrap_err().contains("restricted_symbols"));
    }
}
