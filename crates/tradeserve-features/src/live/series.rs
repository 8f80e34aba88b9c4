//! One symbol's live state: the last bars, kept just long enough to compute the newest bar's
//! features (and to recompute after a bar that arrives a little late), and the features of
//! every bar in the retained history, for point-in-time requests.
//!
//! A new bar costs one [`features_at`] over the last [`WARMUP`] + 1 bars — O(window), no
//! recomputation of history — and gives exactly what the batch computation over the whole
//! series gives (the same function over the same values, summed in the same order).

use std::collections::VecDeque;

use crate::bars::SymbolBars;
use crate::compute::{BarFeatures, WARMUP, features_at, log_returns};

/// A bar as the state keeps it (the open is not a feature input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawBar {
    /// Bar end, Unix seconds.
    pub ts: i64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// A bar with its features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts: i64,
    pub close: f64,
    pub features: BarFeatures,
}

/// What applying a bar did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The newest bar of its symbol.
    Appended,
    /// An earlier bar, within the reorder window: put in its place, later features redone.
    Reordered,
    /// A bar of that time is held already: nothing changed (the first one stands).
    Duplicate,
}

/// Why a bar could not be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLate;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Series {
    /// The last bars, oldest first: [`WARMUP`] + 1 + `slack` at most.
    raw: VecDeque<RawBar>,
    /// Features of the retained bars, oldest first: `retain` at most.
    history: VecDeque<Point>,
    slack: usize,
    retain: usize,
    /// Bars have been dropped from the front of `raw`: a bar placed before index [`WARMUP`]
    /// would need them to redo its successors.
    trimmed: bool,
}

impl Series {
    /// Keep `slack` bars beyond the window (how far back a late bar can be placed) and the
    /// features of the last `retain` bars.
    pub fn new(slack: usize, retain: usize) -> Series {
        Series {
            raw: VecDeque::with_capacity(WARMUP + 2 + slack),
            history: VecDeque::new(),
            slack,
            retain: retain.max(1),
            trimmed: false,
        }
    }

    /// The newest bar's end (`None` before the first bar).
    pub fn newest(&self) -> Option<i64> {
        self.raw.back().map(|b| b.ts)
    }

    /// Bars held for the feature window (at most [`WARMUP`] + 1 + `slack`).
    pub fn bars(&self) -> usize {
        self.raw.len()
    }

    /// The retained features, oldest first.
    pub fn history(&self) -> &VecDeque<Point> {
        &self.history
    }

    /// Apply `bar`; a bar earlier than the newest by more than `window_s` seconds, or earlier
    /// than the bars kept, is [`TooLate`].
    pub fn apply(&mut self, bar: RawBar, window_s: i64) -> Result<Applied, TooLate> {
        let Some(newest) = self.newest() else {
            self.raw.push_back(bar);
            return Ok(Applied::Appended);
        };
        if bar.ts > newest {
            self.raw.push_back(bar);
            self.compute_from(self.raw.len() - 1);
            self.trim();
            return Ok(Applied::Appended);
        }
        let at = self.raw.partition_point(|b| b.ts < bar.ts);
        if self.raw.get(at).is_some_and(|b| b.ts == bar.ts) {
            return Ok(Applied::Duplicate);
        }
        if newest - bar.ts > window_s || (self.trimmed && at < WARMUP) {
            return Err(TooLate);
        }
        self.raw.insert(at, bar);
        // Every point from the inserted bar on is redone.
        while self.history.back().is_some_and(|p| p.ts >= bar.ts) {
            self.history.pop_back();
        }
        self.compute_from(at);
        self.trim();
        Ok(Applied::Reordered)
    }

    /// Features of raw bars `from..`, appended to the history (those with a full window).
    fn compute_from(&mut self, from: usize) {
        let n = self.raw.len();
        let start = from.max(WARMUP);
        if start >= n {
            return;
        }
        let first = start - WARMUP;
        let window: Vec<RawBar> = self.raw.range(first..).copied().collect();
        let bars = SymbolBars {
            ts: window.iter().map(|b| b.ts).collect(),
            high: window.iter().map(|b| b.high).collect(),
            low: window.iter().map(|b| b.low).collect(),
            close: window.iter().map(|b| b.close).collect(),
            volume: window.iter().map(|b| b.volume).collect(),
        };
        let r = log_returns(&bars.close);
        for t in WARMUP..bars.len() {
            if let Some(features) = features_at(&bars, &r, t) {
                self.history.push_back(Point {
                    ts: bars.ts[t],
                    close: bars.close[t],
                    features,
                });
            }
        }
    }

    fn trim(&mut self) {
        while self.raw.len() > WARMUP + 1 + self.slack {
            self.raw.pop_front();
            self.trimmed = true;
        }
        while self.history.len() > self.retain {
            self.history.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::features_all;

    fn bars(n: usize) -> Vec<RawBar> {
        (0..n)
            .map(|i| {
                let p = 100.0 + (i as f64 * 0.37).sin() * 2.0 + i as f64 * 0.01;
                RawBar {
                    ts: 1_760_000_000 + 60 * i as i64,
                    high: p + 0.2,
                    low: p - 0.3,
                    close: p,
                    volume: 1_000.0 + ((i * 7) % 13) as f64 * 25.0,
                }
            })
            .collect()
    }

    fn batch(raw: &[RawBar]) -> Vec<Point> {
        let b = SymbolBars {
            ts: raw.iter().map(|b| b.ts).collect(),
            high: raw.iter().map(|b| b.high).collect(),
            low: raw.iter().map(|b| b.low).collect(),
            close: raw.iter().map(|b| b.close).collect(),
            volume: raw.iter().map(|b| b.volume).collect(),
        };
        features_all(&b)
            .into_iter()
            .enumerate()
            .filter_map(|(t, f)| {
                Some(Point {
                    ts: b.ts[t],
                    close: b.close[t],
                    features: f?,
                })
            })
            .collect()
    }

    #[test]
    fn a_retained_bar_costs_136_bytes() {
        // docs/BENCHMARKS.md states the memory per symbol from this.
        assert_eq!(std::mem::size_of::<Point>(), 136);
        assert_eq!(std::mem::size_of::<RawBar>(), 40);
    }

    #[test]
    fn incremental_features_equal_the_batch_computation_exactly() {
        let all = bars(400);
        let mut s = Series::new(8, 1_000);
        for b in &all {
            assert_eq!(s.apply(*b, 300), Ok(Applied::Appended));
        }
        assert_eq!(s.history().iter().copied().collect::<Vec<_>>(), batch(&all));
    }

    #[test]
    fn history_is_bounded_and_duplicates_change_nothing() {
        let all = bars(200);
        let mut s = Series::new(8, 50);
        for b in &all {
            s.apply(*b, 300).unwrap();
        }
        let before = s.history().clone();
        assert_eq!(before.len(), 50);
        let mut changed = all[150];
        changed.close += 1.0;
        assert_eq!(s.apply(changed, 300), Ok(Applied::Duplicate));
        assert_eq!(s.apply(all[199], 300), Ok(Applied::Duplicate));
        assert_eq!(*s.history(), before);
        assert_eq!(s.raw.len(), WARMUP + 1 + 8);
    }

    #[test]
    fn a_bar_late_within_the_window_is_placed_in_order_and_later_ones_are_refused() {
        let all = bars(120);
        let mut s = Series::new(8, 1_000);
        // Bar 100 arrives after 101 and 102 (two minutes late): the result is as if in order.
        for (i, b) in all.iter().enumerate() {
            if i != 100 {
                s.apply(*b, 300).unwrap();
            }
            if i == 102 {
                assert_eq!(s.apply(all[100], 300), Ok(Applied::Reordered));
            }
        }
        assert_eq!(s.history().iter().copied().collect::<Vec<_>>(), batch(&all));
        // Ten minutes late: refused, nothing changed.
        let mut late = all[110];
        late.ts -= 30;
        let before = s.history().clone();
        assert_eq!(s.apply(late, 300), Err(TooLate));
        assert_eq!(*s.history(), before);
    }
}
