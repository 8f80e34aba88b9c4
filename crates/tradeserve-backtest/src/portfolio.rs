//! A backtest's book: cash and positions from its fills, marked to market at each step of the
//! virtual clock, giving the equity curve and the per-step returns the statistics are taken
//! over ([`crate::stats`]), with turnover and exposure beside them.
//!
//! Fills happen at the price the decision saw (the bar's close), with no costs: the backtest
//! says what the models would have done, not what a venue would have charged. Positions may
//! go short (a SELL without a position), as the risk ledger allows.

use std::collections::BTreeMap;

use serde::Serialize;

/// Cash, positions and the curve so far.
#[derive(Debug, Clone)]
pub struct Book {
    capital: f64,
    cash: f64,
    /// Shares and the last price seen, per symbol.
    positions: BTreeMap<String, (f64, f64)>,
    turnover: f64,
    curve: Curve,
}

/// The book marked at each step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Curve {
    /// Unix seconds of each step.
    pub times: Vec<i64>,
    pub equity: Vec<f64>,
    /// Gross exposure (Σ |position × price|) over equity, at each step.
    pub exposure: Vec<f64>,
}

impl Book {
    pub fn new(capital: f64) -> Book {
        Book {
            capital,
            cash: capital,
            positions: BTreeMap::new(),
            turnover: 0.0,
            curve: Curve::default(),
        }
    }

    /// Buy (`shares` > 0) or sell (< 0) `symbol` at `price`.
    pub fn fill(&mut self, symbol: &str, shares: f64, price: f64) {
        self.cash -= shares * price;
        self.turnover += (shares * price).abs();
        let entry = self
            .positions
            .entry(symbol.to_owned())
            .or_insert((0.0, price));
        entry.0 += shares;
        entry.1 = price;
    }

    /// `symbol`'s price now (a bar closed), for marking.
    pub fn price(&mut self, symbol: &str, price: f64) {
        if let Some(entry) = self.positions.get_mut(symbol) {
            entry.1 = price;
        }
    }

    /// Mark the book at `time` (after that step's fills and prices).
    pub fn mark(&mut self, time: i64) {
        let (value, gross) = self
            .positions
            .values()
            .fold((0.0, 0.0), |(v, g), (shares, price)| {
                (v + shares * price, g + (shares * price).abs())
            });
        let equity = self.cash + value;
        self.curve.times.push(time);
        self.curve.equity.push(equity);
        self.curve.exposure.push(if equity > 0.0 {
            gross / equity
        } else {
            f64::INFINITY
        });
    }

    /// The equity curve so far.
    pub fn curve(&self) -> &Curve {
        &self.curve
    }

    /// The return of each step over the one before (the first over the starting capital).
    pub fn returns(&self) -> Vec<f64> {
        let mut before = self.capital;
        self.curve
            .equity
            .iter()
            .map(|e| {
                let r = e / before - 1.0;
                before = *e;
                r
            })
            .collect()
    }

    /// Traded value over the starting capital.
    pub fn turnover(&self) -> f64 {
        self.turnover / self.capital
    }

    /// Mean gross exposure over the steps (`None` before the first mark or once equity is
    /// gone).
    pub fn mean_exposure(&self) -> Option<f64> {
        let e = &self.curve.exposure;
        let mean = e.iter().sum::<f64>() / e.len() as f64;
        mean.is_finite().then_some(mean)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn fills_marks_and_returns_by_hand() {
        let mut b = Book::new(10_000.0);
        // Buy 10 at 100, the price goes to 110: +100 on 10,000.
        b.fill("AAPL", 10.0, 100.0);
        b.mark(60);
        b.price("AAPL", 110.0);
        b.mark(120);
        // Sell 20 at 110 (short 10), the price falls to 100: +100 again.
        b.fill("AAPL", -20.0, 110.0);
        b.price("AAPL", 100.0);
        b.mark(180);
        assert_eq!(b.curve().times, vec![60, 120, 180]);
        assert_eq!(b.curve().equity, vec![10_000.0, 10_100.0, 10_200.0]);
        let r = b.returns();
        assert_eq!(r[0], 0.0);
        assert!((r[1] - 0.01).abs() < 1e-15);
        assert!((r[2] - 100.0 / 10_100.0).abs() < 1e-15);
        // 1,000 + 2,200 traded on 10,000.
        assert!((b.turnover() - 0.32).abs() < 1e-15);
        // Exposure: 1,000 / 10,000, 1,100 / 10,100, 1,000 / 10,200.
        let want = (0.1 + 1_100.0 / 10_100.0 + 1_000.0 / 10_200.0) / 3.0;
        assert!((b.mean_exposure().unwrap() - want).abs() < 1e-15);
    }

    #[test]
    fn an_empty_book_has_no_exposure_figure() {
        let b = Book::new(1.0);
        assert_eq!(b.mean_exposure(), None);
        assert!(b.returns().is_empty());
    }
}
