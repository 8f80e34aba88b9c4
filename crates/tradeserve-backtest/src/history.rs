//! The bar history a backtest runs over, and the part of it that is decided: the whole of it
//! (once each symbol has its features' look-back), the last N trading days, or a time range —
//! the bars before the range stay in as look-back.

use std::collections::BTreeMap;

use serde::Serialize;
use tradeserve_features::SymbolBars;
use tradeserve_features::compute::WARMUP;

/// The history a comparison ran over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub symbols: Vec<String>,
    /// Bars held, over every symbol.
    pub bars: usize,
    /// Unix seconds of the first and last bar held.
    pub first_bar: Option<i64>,
    pub last_bar: Option<i64>,
    /// The first bar decided (Unix seconds): the earlier ones are the features' look-back.
    pub decided_from: Option<i64>,
}

impl History {
    /// The history of `bars`, decided from `from` (or as soon as features exist).
    pub fn of(bars: &BTreeMap<String, SymbolBars>, from: Option<i64>) -> History {
        let ts = || bars.values().flat_map(|b| b.ts.iter().copied());
        History {
            symbols: bars.keys().cloned().collect(),
            bars: bars.values().map(|b| b.ts.len()).sum(),
            first_bar: ts().min(),
            last_bar: ts().max(),
            decided_from: bars
                .values()
                .filter_map(|b| {
                    let first = b.ts.get(WARMUP..)?;
                    first.iter().copied().find(|t| from.is_none_or(|f| *t >= f))
                })
                .min(),
        }
    }
}

/// The first bar time of the last `days` trading days (UTC dates with bars) of `bars`.
pub fn last_days_from(bars: &BTreeMap<String, SymbolBars>, days: usize) -> Option<i64> {
    const DAY: i64 = 86_400;
    let mut dates: Vec<i64> = bars
        .values()
        .flat_map(|b| b.ts.iter().map(|t| t.div_euclid(DAY)))
        .collect();
    dates.sort_unstable();
    dates.dedup();
    let first = *dates.get(dates.len().checked_sub(days.max(1))?)?;
    Some(first * DAY)
}

/// `bars` without the bars closing after `to` (Unix seconds), and without symbols left with
/// none.
pub fn until(bars: BTreeMap<String, SymbolBars>, to: i64) -> BTreeMap<String, SymbolBars> {
    bars.into_iter()
        .filter_map(|(symbol, b)| {
            let n = b.ts.partition_point(|t| *t <= to);
            (n > 0).then(|| {
                let cut = SymbolBars {
                    ts: b.ts[..n].to_vec(),
                    high: b.high[..n].to_vec(),
                    low: b.low[..n].to_vec(),
                    close: b.close[..n].to_vec(),
                    volume: b.volume[..n].to_vec(),
                };
                (symbol, cut)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(ts: &[i64]) -> SymbolBars {
        SymbolBars {
            ts: ts.to_vec(),
            high: vec![1.0; ts.len()],
            low: vec![1.0; ts.len()],
            close: vec![1.0; ts.len()],
            volume: vec![1.0; ts.len()],
        }
    }

    #[test]
    fn the_last_days_start_at_midnight_of_the_earliest_of_them() {
        const DAY: i64 = 86_400;
        let history: BTreeMap<String, SymbolBars> = [
            ("A".to_owned(), bars(&[DAY + 10, 2 * DAY + 5, 4 * DAY + 7])),
            ("B".to_owned(), bars(&[3 * DAY + 1])),
        ]
        .into();
        assert_eq!(last_days_from(&history, 1), Some(4 * DAY));
        assert_eq!(last_days_from(&history, 2), Some(3 * DAY));
        assert_eq!(last_days_from(&history, 4), Some(DAY));
        assert_eq!(last_days_from(&history, 5), None);
        let cut = until(history, 2 * DAY + 5);
        assert_eq!(cut["A"].ts, vec![DAY + 10, 2 * DAY + 5]);
        assert!(!cut.contains_key("B"));
    }
}
