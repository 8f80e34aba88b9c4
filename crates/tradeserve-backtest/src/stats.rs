//! Performance statistics of a series of per-period returns (simple, not logarithmic), with
//! the definitions of `empyrical` (Quantopian's, maintained as `empyrical-reloaded`), so that
//! the numbers agree with the tools a desk already uses (to 1e-9: `tests/empyrical.rs`):
//!
//! - total return: `∏(1 + r) − 1`; annual return: `∏(1 + r)^(A / n) − 1`;
//! - Sharpe: `mean(r) / std(r) · √A`, the sample standard deviation (n − 1), no risk-free rate;
//! - Sortino: `mean(r) · A / (√mean(min(r, 0)²) · √A)` (target return 0);
//! - maximum drawdown: the largest fall of the compounded equity from its running peak, the
//!   starting value counting as a peak (≤ 0);
//! - Calmar: annual return / |maximum drawdown| (none without a drawdown).
//!
//! `A` is the number of periods in a year: the annualisation is always stated beside the
//! figures. A statistic that is undefined (too few returns, no dispersion, no drawdown) is
//! `None`, never NaN or infinity.

use serde::Serialize;

/// The statistics of one return series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Returns in the series.
    pub periods: usize,
    /// Periods a year the annual figures assume.
    pub annualization: f64,
    pub total_return: Option<f64>,
    pub annual_return: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    /// ≤ 0: the largest fall from a peak, as a fraction of the peak.
    pub max_drawdown: Option<f64>,
    pub calmar: Option<f64>,
}

impl Stats {
    /// The statistics of `returns` with `annualization` periods a year.
    pub fn of(returns: &[f64], annualization: f64) -> Stats {
        let annual_return = annual_return(returns, annualization);
        let max_drawdown = max_drawdown(returns);
        let calmar = match (annual_return, max_drawdown) {
            (Some(a), Some(dd)) if dd < 0.0 => finite(a / dd.abs()),
            _ => None,
        };
        Stats {
            periods: returns.len(),
            annualization,
            total_return: (!returns.is_empty()).then(|| growth(returns) - 1.0),
            annual_return,
            sharpe: sharpe(returns, annualization),
            sortino: sortino(returns, annualization),
            max_drawdown,
            calmar,
        }
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// `∏(1 + r)`, multiplied in order as `numpy.prod` does.
fn growth(returns: &[f64]) -> f64 {
    returns.iter().fold(1.0, |acc, r| acc * (1.0 + r))
}

fn annual_return(returns: &[f64], annualization: f64) -> Option<f64> {
    if returns.is_empty() {
        return None;
    }
    let years = returns.len() as f64 / annualization;
    finite(growth(returns).powf(1.0 / years) - 1.0)
}

fn sharpe(returns: &[f64], annualization: f64) -> Option<f64> {
    if returns.len() < 2 {
        return None;
    }
    let m = mean(returns);
    let var = returns.iter().map(|r| (r - m).powi(2)).sum::<f64>() / (returns.len() - 1) as f64;
    let constant = returns.iter().all(|r| *r == returns[0]);
    if constant {
        return None;
    }
    finite(m / var.sqrt() * annualization.sqrt())
}

fn sortino(returns: &[f64], annualization: f64) -> Option<f64> {
    if returns.len() < 2 {
        return None;
    }
    let downside = mean(
        &returns
            .iter()
            .map(|r| r.min(0.0).powi(2))
            .collect::<Vec<f64>>(),
    )
    .sqrt()
        * annualization.sqrt();
    finite(mean(returns) * annualization / downside)
}

fn max_drawdown(returns: &[f64]) -> Option<f64> {
    if returns.is_empty() {
        return None;
    }
    // As empyrical: equity from 100, the start counting as the first peak.
    let (mut equity, mut peak, mut worst) = (100.0_f64, 100.0_f64, 0.0_f64);
    for r in returns {
        equity *= 1.0 + r;
        peak = peak.max(equity);
        worst = worst.min((equity - peak) / peak);
    }
    Some(worst)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn figures_worked_by_hand() {
        // +10%, −20%, +10%: equity 110, 88, 96.8.
        let s = Stats::of(&[0.1, -0.2, 0.1], 252.0);
        assert!((s.total_return.unwrap() - (-0.032)).abs() < 1e-12);
        assert!((s.max_drawdown.unwrap() - (-0.2)).abs() < 1e-12);
        // mean 0 → Sharpe and Sortino 0.
        assert!(s.sharpe.unwrap().abs() < 1e-12);
        assert!(s.sortino.unwrap().abs() < 1e-12);
    }

    #[test]
    fn undefined_figures_are_none_not_nan() {
        let empty = Stats::of(&[], 252.0);
        assert_eq!(
            (
                empty.total_return,
                empty.sharpe,
                empty.max_drawdown,
                empty.calmar
            ),
            (None, None, None, None)
        );
        let one = Stats::of(&[0.01], 252.0);
        assert_eq!((one.sharpe, one.sortino), (None, None));
        // Only gains: no drawdown, so no Calmar; no downside, so no Sortino.
        let up = Stats::of(&[0.01, 0.02, 0.01], 252.0);
        assert_eq!(up.max_drawdown, Some(0.0));
        assert_eq!((up.calmar, up.sortino), (None, None));
        // No dispersion: no Sharpe.
        assert_eq!(Stats::of(&[0.01, 0.01], 252.0).sharpe, None);
        let json = serde_json_free_check(&up);
        assert!(json);
    }

    /// Every figure is finite or absent (serializable as JSON numbers or null).
    fn serde_json_free_check(s: &Stats) -> bool {
        [
            s.total_return,
            s.annual_return,
            s.sharpe,
            s.sortino,
            s.max_drawdown,
            s.calmar,
        ]
        .iter()
        .flatten()
        .all(|x| x.is_finite())
    }
}
