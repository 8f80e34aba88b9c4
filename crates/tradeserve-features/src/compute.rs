//! The feature set, computed exactly as `training/features.py` computes it.
//!
//! Every feature of bar `t` uses bars `0..=t` only, in f64. A bar has features once it has
//! [`WARMUP`] earlier bars. The parity test (`tests/parity.rs`) holds this file and the
//! Python within 1e-9 on golden rows; change both or neither.

use tradeserve_core::schema::{FEATURE_WIDTH, HIT_RATES};

use crate::bars::SymbolBars;

/// Bars needed before the first one with features (`ret_60` needs 61 closes).
pub const WARMUP: usize = 60;
/// Window of the strategy hit rates.
pub const HIT_WINDOW: usize = 30;

/// Features and hit rates of one bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarFeatures {
    pub features: [f64; FEATURE_WIDTH],
    pub hit_rates: [f64; HIT_RATES.len()],
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (ddof = 1), two-pass.
fn std(x: &[f64]) -> f64 {
    let m = mean(x);
    let ss: f64 = x.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / (x.len() - 1) as f64).sqrt()
}

fn ratio_or(num: f64, den: f64, fallback: f64) -> f64 {
    if den > 0.0 { num / den } else { fallback }
}

/// One-bar log returns; `r[0] = 0`.
pub fn log_returns(close: &[f64]) -> Vec<f64> {
    let mut r = Vec::with_capacity(close.len());
    r.push(0.0);
    for w in close.windows(2) {
        r.push(w[1].ln() - w[0].ln());
    }
    r
}

/// Features of bar `t`, or `None` during the warm-up. `r` is [`log_returns`] of the closes.
pub fn features_at(bars: &SymbolBars, r: &[f64], t: usize) -> Option<BarFeatures> {
    if t < WARMUP || t >= bars.len() {
        return None;
    }
    let c = &bars.close;
    let lc = |i: usize| c[i].ln();
    // The last n bars up to and including t.
    let last = |n: usize| t + 1 - n..t + 1;
    let vol15 = std(&r[last(15)]);
    let vol60 = std(&r[last(60)]);
    let rsi_window = &r[last(14)];
    let gains: f64 = rsi_window.iter().map(|v| v.max(0.0)).sum();
    let losses: f64 = rsi_window.iter().map(|v| (-v).max(0.0)).sum();
    let ranges: Vec<f64> = last(15)
        .map(|i| (bars.high[i] - bars.low[i]) / c[i])
        .collect();
    let v = &bars.volume[last(60)];
    let vstd = std(v);
    let features = [
        lc(t) - lc(t - 1),
        lc(t) - lc(t - 5),
        lc(t) - lc(t - 15),
        lc(t) - lc(t - 60),
        vol15,
        vol60,
        ratio_or(vol15, vol60, 1.0),
        ratio_or(gains, gains + losses, 0.5),
        c[t] / mean(&c[last(20)]) - 1.0,
        c[t] / mean(&c[last(60)]) - 1.0,
        mean(&ranges),
        ratio_or(bars.volume[t] - mean(v), vstd, 0.0),
    ];
    let k = HIT_WINDOW;
    let share =
        |pred: &dyn Fn(usize) -> bool| last(k).filter(|i| pred(*i)).count() as f64 / k as f64;
    let hit_rates = [
        share(&|i| r[i] > 0.0),
        share(&|i| r[i] < 0.0),
        share(&|i| i >= 1 && r[i] * r[i - 1] < 0.0),
    ];
    Some(BarFeatures {
        features,
        hit_rates,
    })
}

/// Features of every bar of a symbol (`None` during the warm-up).
pub fn features_all(bars: &SymbolBars) -> Vec<Option<BarFeatures>> {
    let r = log_returns(&bars.close);
    (0..bars.len()).map(|t| features_at(bars, &r, t)).collect()
}
