//! What a run comes to: per symbol and overall, decisions and orders, the hit rate and mean
//! return of the orders (their next-bar outcomes), the [`Stats`] of the book's returns,
//! turnover and exposure. Plain data, serialized as the backtest's JSON: nothing in it depends
//! on the wall clock or on ids, so two runs over the same inputs give the same bytes.

use std::collections::BTreeMap;

use serde::Serialize;

use tradeserve_core::Action;

use crate::engine::{Decided, Order, Run};
use crate::stats::Stats;

/// Orders and their outcomes, for one symbol or all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Orders {
    pub orders: u64,
    /// Orders with an outcome (not at the history's last bar).
    pub judged: u64,
    /// Share of judged orders whose outcome was positive.
    pub hit_rate: Option<f64>,
    /// Mean outcome (next-bar return × direction) of the judged orders.
    pub mean_return: Option<f64>,
}

impl Orders {
    fn of<'a>(orders: impl Iterator<Item = &'a Order>) -> Orders {
        let (mut n, mut judged, mut hits, mut sum) = (0u64, 0u64, 0u64, 0.0);
        for o in orders {
            n += 1;
            if let Some(r) = o.outcome {
                judged += 1;
                sum += r;
                hits += u64::from(r > 0.0);
            }
        }
        let per = |x: f64| (judged > 0).then(|| x / judged as f64);
        Orders {
            orders: n,
            judged,
            hit_rate: per(hits as f64),
            mean_return: per(sum),
        }
    }
}

/// How the decisions split between actions, and the regime detector's mean probabilities: the
/// mix live trading is compared with (drift).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Mix {
    pub buy: u64,
    pub sell: u64,
    pub hold: u64,
    /// Mean regime probabilities over the decisions (`None` without any).
    pub regime_bull: Option<f64>,
    pub regime_bear: Option<f64>,
    pub regime_sideways: Option<f64>,
}

impl Mix {
    fn of(decided: &[Decided]) -> Mix {
        let mut mix = Mix::default();
        let mut sum = [0.0; 3];
        for d in decided {
            match d.action {
                Action::Buy => mix.buy += 1,
                Action::Sell => mix.sell += 1,
                Action::Hold => mix.hold += 1,
            }
            for (s, p) in sum.iter_mut().zip(d.regime) {
                *s += p;
            }
        }
        let n = decided.len();
        let mean = |s: f64| (n > 0).then(|| s / n as f64);
        mix.regime_bull = mean(sum[0]);
        mix.regime_bear = mean(sum[1]);
        mix.regime_sideways = mean(sum[2]);
        mix
    }
}

/// The report of one model set's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub decisions: u64,
    /// Decisions the risk checks refused.
    pub rejected: u64,
    /// Bars that got no decision, by reason (none expected: a bar the features cannot use).
    pub failed: BTreeMap<String, u64>,
    pub mix: Mix,
    pub overall: Orders,
    pub by_symbol: BTreeMap<String, Orders>,
    /// Of the book's per-step returns.
    pub stats: Stats,
    /// Traded value over the starting capital.
    pub turnover: f64,
    /// Mean gross exposure over equity.
    pub exposure: Option<f64>,
}

impl Report {
    /// The report of `run`, its statistics annualised at `annualization` steps a year.
    pub fn of(run: &Run, annualization: f64) -> Report {
        let mut symbols: BTreeMap<&str, Vec<&Order>> = BTreeMap::new();
        for o in &run.orders {
            symbols.entry(o.symbol.as_str()).or_default().push(o);
        }
        Report {
            decisions: run.decisions,
            rejected: run.rejected,
            failed: run.failed.clone(),
            mix: Mix::of(&run.decided),
            overall: Orders::of(run.orders.iter()),
            by_symbol: symbols
                .into_iter()
                .map(|(s, orders)| (s.to_owned(), Orders::of(orders.into_iter())))
                .collect(),
            stats: Stats::of(&run.book.returns(), annualization),
            turnover: run.book.turnover(),
            exposure: run.book.mean_exposure(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::portfolio::Book;

    fn order(symbol: &str, outcome: Option<f64>) -> Order {
        Order {
            symbol: symbol.into(),
            time: 0,
            shares: 1,
            price: 1.0,
            outcome,
        }
    }

    #[test]
    fn hit_rates_and_mean_returns_per_symbol_and_overall() {
        let mut book = Book::new(100.0);
        book.mark(60);
        let run = Run {
            decisions: 5,
            rejected: 1,
            failed: BTreeMap::new(),
            orders: vec![
                order("AAPL", Some(0.02)),
                order("AAPL", Some(-0.01)),
                order("MSFT", Some(0.03)),
                order("MSFT", None),
            ],
            decided: Vec::new(),
            book,
        };
        let r = Report::of(&run, 252.0);
        assert_eq!((r.decisions, r.rejected), (5, 1));
        assert_eq!((r.overall.orders, r.overall.judged), (4, 3));
        assert!((r.overall.hit_rate.unwrap() - 2.0 / 3.0).abs() < 1e-15);
        assert!((r.overall.mean_return.unwrap() - 0.04 / 3.0).abs() < 1e-15);
        let aapl = r.by_symbol["AAPL"];
        assert_eq!(aapl.hit_rate, Some(0.5));
        assert!((aapl.mean_return.unwrap() - 0.005).abs() < 1e-15);
        let msft = r.by_symbol["MSFT"];
        assert_eq!((msft.orders, msft.judged, msft.hit_rate), (2, 1, Some(1.0)));
        // No order judged: no rate, not a division by zero.
        assert_eq!(Orders::of([order("X", None)].iter()).hit_rate, None);
    }
}
