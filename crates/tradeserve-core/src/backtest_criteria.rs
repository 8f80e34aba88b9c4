//! What a rollout's `backtest` stage is judged by ([`crate::backtest_gate`]): its criteria,
//! as the rollout is created with them, and the figures of the champion's and the candidate's
//! backtests they are compared on.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::experiment::{InvalidField, invalid};

/// The criteria of a rollout's `backtest` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BacktestGate {
    /// Trading days decided: the last N of the service's bar history.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 365, default = 5))]
    pub days: u32,
    /// The candidate's hit rate (share of orders whose next-bar return was positive) may be
    /// lower than the champion's by at most this (0.02: two percentage points).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1, default = 0.02))]
    pub max_hit_rate_drop: f64,
    /// The candidate's Sharpe ratio may be lower than the champion's by at most this.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, default = 1.0))]
    pub max_sharpe_drop: f64,
    /// The candidate's maximum drawdown may be deeper than the champion's by at most this
    /// fraction of equity (0.01: one percentage point).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1, default = 0.01))]
    pub max_drawdown_increase: f64,
    /// Orders the candidate must place for its figures to be judged at all.
    #[cfg_attr(feature = "openapi", schema(default = 100))]
    pub min_orders: u64,
}

impl Default for BacktestGate {
    fn default() -> Self {
        BacktestGate {
            days: 5,
            max_hit_rate_drop: 0.02,
            max_sharpe_drop: 1.0,
            max_drawdown_increase: 0.01,
            min_orders: 100,
        }
    }
}

impl BacktestGate {
    pub(crate) fn validate(&self) -> Result<(), InvalidField> {
        if !(1..=365).contains(&self.days) {
            return Err(invalid("backtest.days", "must be 1-365"));
        }
        if !(self.max_hit_rate_drop.is_finite() && (0.0..=1.0).contains(&self.max_hit_rate_drop)) {
            return Err(invalid("backtest.max_hit_rate_drop", "must be in [0, 1]"));
        }
        if !(self.max_sharpe_drop.is_finite() && self.max_sharpe_drop >= 0.0) {
            return Err(invalid("backtest.max_sharpe_drop", "must be a number >= 0"));
        }
        if !(self.max_drawdown_increase.is_finite()
            && (0.0..=1.0).contains(&self.max_drawdown_increase))
        {
            return Err(invalid(
                "backtest.max_drawdown_increase",
                "must be in [0, 1]",
            ));
        }
        Ok(())
    }
}

/// One set's backtest figures (the statistics as `tradeserve backtest` reports them; a
/// statistic that is undefined is null).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BacktestFigures {
    pub decisions: u64,
    pub orders: u64,
    pub hit_rate: Option<f64>,
    /// Mean next-bar return per order.
    pub mean_return: Option<f64>,
    pub total_return: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    /// ≤ 0.
    pub max_drawdown: Option<f64>,
    pub calmar: Option<f64>,
    pub turnover: f64,
}

/// What the backtest stage ran and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BacktestSummary {
    /// The first and last bar decided.
    #[serde(with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub symbols: usize,
    /// Periods a year of the Sharpe ratios.
    pub periods_per_year: f64,
    pub champion: BacktestFigures,
    pub candidate: BacktestFigures,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_are_validated() {
        let bad = [
            BacktestGate {
                days: 0,
                ..BacktestGate::default()
            },
            BacktestGate {
                max_hit_rate_drop: -0.1,
                ..BacktestGate::default()
            },
            BacktestGate {
                max_sharpe_drop: f64::NAN,
                ..BacktestGate::default()
            },
            BacktestGate {
                max_drawdown_increase: 1.5,
                ..BacktestGate::default()
            },
        ];
        for (gate, field) in bad.iter().zip([
            "backtest.days",
            "backtest.max_hit_rate_drop",
            "backtest.max_sharpe_drop",
            "backtest.max_drawdown_increase",
        ]) {
            assert_eq!(gate.validate().unwrap_err().field, field);
        }
        assert!(BacktestGate::default().validate().is_ok());
    }
}
