//! Risk limits and the six named checks: the rules, with no state.
//!
//! [`evaluate`] is pure: an order, the symbol's book and the limits in, a [`RiskValidation`]
//! out. A [`RiskLedger`](crate::ports::RiskLedger) does check-and-apply atomically so limits
//! hold under concurrency; [`crate::ledger::InMemoryRiskLedger`] is the single-replica one.

use crate::error::InvalidSetting;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU64;
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
    /// Largest single order, in shares (`order_quantity`).
    pub max_order_quantity: NonZeroU64,
    /// Gross notional (USD, every order's quantity × price) a desk — an API key; every
    /// unauthenticated caller together — may trade per UTC day (`desk_daily_notional`); an API
    /// key's `daily_notional` overrides it.
    pub desk_daily_notional: f64,
    /// Approved orders per second (a UTC wall-clock second) per symbol (`order_rate`).
    pub max_orders_per_second_symbol: NonZeroU64,
    /// Approved orders per second per desk (`order_rate`); an API key's `orders_per_second`
    /// overrides it.
    pub max_orders_per_second_desk: NonZeroU64,
    /// The repeated-execution latch: more approved orders than this in one symbol within one
    /// `repeated_execution_window` (windows aligned to the UTC clock: each minute by default)
    /// fails `repeated_execution` and halts the symbol until an operator releases it.
    pub repeated_execution_max: NonZeroU64,
    #[serde(with = "humantime_serde")]
    pub repeated_execution_window: std::time::Duration,
    /// A check warns when its measure exceeds this fraction of the limit.
    pub warn_fraction: f64,
}

/// A desk's own limits (its API key's overrides of the `[risk]` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeskLimits {
    pub daily_notional: Option<f64>,
    pub orders_per_second: Option<u64>,
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
            max_order_quantity: crate::bounded::at_least_one(100_000),
            desk_daily_notional: 500_000_000.0,
            max_orders_per_second_symbol: crate::bounded::at_least_one(1_000),
            max_orders_per_second_desk: crate::bounded::at_least_one(10_000),
            repeated_execution_max: crate::bounded::at_least_one(50_000),
            repeated_execution_window: std::time::Duration::from_secs(60),
            warn_fraction: 0.8,
        }
    }
}

impl RiskLimits {
    /// Check the limits; the message names the bad one.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let positive = [
            ("max_position_notional", self.max_position_notional),
            ("portfolio_capital", self.portfolio_capital),
            ("max_order_notional", self.max_order_notional),
            ("desk_daily_notional", self.desk_daily_notional),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("risk.{name} must be a finite number > 0").into());
            }
        }
        if !(self.max_concentration > 0.0 && self.max_concentration <= 1.0) {
            return Err("risk.max_concentration must be in (0, 1]".into());
        }
        if self.repeated_execution_window < std::time::Duration::from_secs(1) {
            return Err("risk.repeated_execution_window must be at least 1s".into());
        }
        if !(self.warn_fraction > 0.0 && self.warn_fraction <= 1.0) {
            return Err("risk.warn_fraction must be in (0, 1]".into());
        }
        for s in &self.restricted_symbols {
            if crate::types::Symbol::parse(s).is_err() {
                return Err(format!("risk.restricted_symbols: {s:?} is not a valid symbol").into());
            }
        }
        Ok(())
    }
}

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

/// The ten checks, each with its status, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checks {
    pub position_limit: CheckStatus,
    pub concentration: CheckStatus,
    pub order_notional: CheckStatus,
    pub restricted_list: CheckStatus,
    pub daily_order_count: CheckStatus,
    /// Fails while a trading halt covers the order (the warning names the halt:
    /// `kill_switch: halted by halt-…`).
    pub kill_switch: CheckStatus,
    /// The order's shares against `risk.max_order_quantity` (RTS 6 Art. 15(1)(b): maximum
    /// order volume).
    pub order_quantity: CheckStatus,
    /// The desk's (API key's) gross notional today, this order included, against its
    /// `daily_notional` or `risk.desk_daily_notional` (15c3-5 (c)(1)(i): credit thresholds per
    /// customer).
    pub desk_daily_notional: CheckStatus,
    /// Approved orders this UTC second for the symbol (`risk.max_orders_per_second_symbol`)
    /// and for the desk (its `orders_per_second` or `risk.max_orders_per_second_desk`) (RTS 6
    /// Art. 15(1)(c)-(d): message and order limits).
    pub order_rate: CheckStatus,
    /// Approved orders in the symbol within `risk.repeated_execution_window` against
    /// `risk.repeated_execution_max`; fail halts the symbol until an operator releases it
    /// (RTS 6 Art. 15(3)).
    pub repeated_execution: CheckStatus,
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
            order_quantity: CheckStatus::Pass,
            desk_daily_notional: CheckStatus::Pass,
            order_rate: CheckStatus::Pass,
            repeated_execution: CheckStatus::Pass,
        }
    }

    /// Name and status of every check, in order.
    pub fn iter(&self) -> [(&'static str, CheckStatus); 10] {
        [
            ("position_limit", self.position_limit),
            ("concentration", self.concentration),
            ("order_notional", self.order_notional),
            ("restricted_list", self.restricted_list),
            ("daily_order_count", self.daily_order_count),
            ("kill_switch", self.kill_switch),
            ("order_quantity", self.order_quantity),
            ("desk_daily_notional", self.desk_daily_notional),
            ("order_rate", self.order_rate),
            ("repeated_execution", self.repeated_execution),
        ]
    }
}

/// The `risk_validation` object of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The desk: the API key that asks (`-`: an unauthenticated caller).
    pub desk: &'a str,
    /// The desk's own limits.
    pub desk_limits: DeskLimits,
    /// When it is checked, in milliseconds since the Unix epoch (the rate's second, the
    /// latch's window).
    pub at_ms: i64,
}

impl Order<'_> {
    fn signed_quantity(&self) -> i64 {
        self.action.direction() * i64::try_from(self.quantity).unwrap_or(i64::MAX)
    }

    /// Whether the order changes anything (a HOLD or zero shares does not).
    pub fn is_inert(&self) -> bool {
        self.action == Action::Hold || self.quantity == 0
    }

    /// Its gross notional in whole cents (what `desk_daily_notional` adds up, exactly).
    pub fn notional_cents(&self) -> u64 {
        to_cents(self.quantity as f64 * self.price)
    }

    /// The UTC second the rate counts it in.
    pub fn second(&self) -> i64 {
        self.at_ms.div_euclid(1000)
    }

    /// The latch's window it falls in (windows of `limits.repeated_execution_window` since
    /// the Unix epoch).
    pub fn latch_window(&self, limits: &RiskLimits) -> i64 {
        let ms = i64::try_from(limits.repeated_execution_window.as_millis()).unwrap_or(i64::MAX);
        self.at_ms.div_euclid(ms.max(1))
    }

    /// The desk's daily notional limit in cents, and its orders per second.
    pub fn desk_bounds(&self, limits: &RiskLimits) -> (u64, u64) {
        let notional = self
            .desk_limits
            .daily_notional
            .unwrap_or(limits.desk_daily_notional);
        let rate = self
            .desk_limits
            .orders_per_second
            .unwrap_or(limits.max_orders_per_second_desk.get());
        (to_cents(notional), rate)
    }
}

/// Dollars to whole cents (rounded; negative and NaN are 0, past `u64::MAX` saturates).
fn to_cents(usd: f64) -> u64 {
    (usd * 100.0).round() as u64
}

/// What the ledger knows of the order flow around one order, besides the symbol's book: the
/// desk's gross notional today, the orders approved in this second for the symbol and for the
/// desk, and the symbol's orders in the latch's current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    pub desk_notional_cents: u64,
    pub symbol_this_second: u64,
    pub desk_this_second: u64,
    pub symbol_in_window: u64,
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
    /// The count an order of `day` is checked against: this book's, when its day is `day`
    /// or later (an order that reaches the ledger after one of the next day counts in that
    /// day: a count never goes back), else 0.
    fn orders_on(&self, day: Date) -> u64 {
        if self.day >= Some(day) {
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
        self.day = self.day.max(Some(order.day));
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

/// Run every check of `order` against the symbol's book, with no order flow seen.
pub fn evaluate(order: &Order<'_>, book: &SymbolBook, limits: &RiskLimits) -> RiskValidation {
    evaluate_with(order, book, &Flow::default(), limits)
}

/// Run every check of `order` against the symbol's book and the order flow around it.
pub fn evaluate_with(
    order: &Order<'_>,
    book: &SymbolBook,
    flow: &Flow,
    limits: &RiskLimits,
) -> RiskValidation {
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
    flow_checks(order, flow, limits, &mut checks, &mut warnings);
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

/// The checks on the order flow: the order's shares, the desk's notional today, the orders
/// this second (symbol and desk), and the repeated-execution latch.
fn flow_checks(
    order: &Order<'_>,
    flow: &Flow,
    limits: &RiskLimits,
    checks: &mut Checks,
    warnings: &mut Vec<String>,
) {
    let w = limits.warn_fraction;
    let graded = grade(
        order.quantity as f64,
        limits.max_order_quantity.get() as f64,
        w,
    );
    checks.order_quantity = noted(graded, warnings, || {
        format!(
            "order_quantity: {} shares, limit {}",
            order.quantity, limits.max_order_quantity
        )
    });
    let (desk_cents, desk_rate) = order.desk_bounds(limits);
    let after = flow
        .desk_notional_cents
        .saturating_add(order.notional_cents());
    let graded = grade(after as f64, desk_cents as f64, w);
    checks.desk_daily_notional = noted(graded, warnings, || {
        format!(
            "desk_daily_notional: desk {} at ${:.2} today after the order, limit ${:.2}",
            order.desk,
            after as f64 / 100.0,
            desk_cents as f64 / 100.0
        )
    });
    let symbol = grade(
        (flow.symbol_this_second + 1) as f64,
        limits.max_orders_per_second_symbol.get() as f64,
        w,
    );
    let desk = grade((flow.desk_this_second + 1) as f64, desk_rate as f64, w);
    checks.order_rate = noted(symbol.max_severity(desk), warnings, || {
        format!(
            "order_rate: order {} this second on {} (limit {}), {} for desk {} (limit {desk_rate})",
            flow.symbol_this_second + 1,
            order.symbol,
            limits.max_orders_per_second_symbol,
            flow.desk_this_second + 1,
            order.desk
        )
    });
    let n = flow.symbol_in_window + 1;
    let graded = grade(n as f64, limits.repeated_execution_max.get() as f64, w);
    checks.repeated_execution = noted(graded, warnings, || {
        format!(
            "repeated_execution: order {n} on {} in this {} s window, limit {}{}",
            order.symbol,
            limits.repeated_execution_window.as_secs(),
            limits.repeated_execution_max,
            if graded == CheckStatus::Fail {
                "; the symbol is halted"
            } else {
                ""
            }
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
            desk: "-",
            desk_limits: DeskLimits::default(),
            at_ms: 1_761_000_000_000,
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
            max_order_quantity: std::num::NonZeroU64::new(100_000).unwrap(),
            desk_daily_notional: 1e12,
            max_orders_per_second_symbol: std::num::NonZeroU64::new(1_000_000).unwrap(),
            max_orders_per_second_desk: std::num::NonZeroU64::new(1_000_000).unwrap(),
            repeated_execution_max: std::num::NonZeroU64::new(1_000_000).unwrap(),
            repeated_execution_window: std::time::Duration::from_secs(60),
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
        assert!(bad.validate().unwrap_err().0.contains("max_concentration"));
        let bad = RiskLimits {
            restricted_symbols: vec!["bad sym".into()],
            ..RiskLimits::default()
        };
        assert!(bad.validate().unwrap_err().0.contains("restricted_symbols"));
    }
}
