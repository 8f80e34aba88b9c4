"""The feature set, defined once for training; the Rust service computes exactly the same.

The Rust twin lives in `crates/tradeserve-features/src/compute.rs`; `golden_features.json`
(written by `train.py`) pins both to each other within 1e-6. Change one, change both.

All features of bar t use bars 0..=t of the same symbol only (no look-ahead), in float64.
A bar has features once it has WARMUP earlier bars.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view as windows

FEATURES = [
    "ret_1", "ret_5", "ret_15", "ret_60",
    "vol_15", "vol_60", "vol_ratio", "rsi_14",
    "sma_gap_20", "sma_gap_60", "range_15", "volume_z_60",
]
HIT_RATES = ["hit_bull", "hit_bear", "hit_sideways"]
HIT_WINDOW = 30
WARMUP = 60  # bars before the first one with features (ret_60 needs 61 closes)


def _rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of each window of n values, two-pass."""
    w = windows(x, n)
    mean = w.sum(axis=1) / n
    dev = w - mean[:, None]
    return np.sqrt((dev * dev).sum(axis=1) / (n - 1))


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    return windows(x, n).sum(axis=1) / n


def compute(close: np.ndarray, high: np.ndarray, low: np.ndarray, volume: np.ndarray):
    """Features and strategy hit rates for every bar of one symbol.

    Returns (features[n, 12], hit_rates[n, 3], valid[n]) where rows with valid = False (the
    warm-up) are NaN.
    """
    n = len(close)
    feats = np.full((n, len(FEATURES)), np.nan)
    hits = np.full((n, len(HIT_RATES)), np.nan)
    valid = np.zeros(n, dtype=bool)
    if n <= WARMUP:
        return feats, hits, valid
    t = np.arange(WARMUP, n)
    logc = np.log(close)
    r = np.empty(n)
    r[0] = 0.0
    r[1:] = logc[1:] - logc[:-1]

    feats[t, 0] = logc[t] - logc[t - 1]
    feats[t, 1] = logc[t] - logc[t - 5]
    feats[t, 2] = logc[t] - logc[t - 15]
    feats[t, 3] = logc[t] - logc[t - 60]
    # windows of returns ending at t: r[t-k+1..=t]; window index j covers x[j..j+k)
    vol15 = _rolling_std(r, 15)[t - 14]
    vol60 = _rolling_std(r, 60)[t - 59]
    feats[t, 4] = vol15
    feats[t, 5] = vol60
    feats[t, 6] = np.where(vol60 > 0.0, vol15 / np.where(vol60 > 0.0, vol60, 1.0), 1.0)
    gains = windows(np.maximum(r, 0.0), 14).sum(axis=1)[t - 13]
    losses = windows(np.maximum(-r, 0.0), 14).sum(axis=1)[t - 13]
    total = gains + losses
    feats[t, 7] = np.where(total > 0.0, gains / np.where(total > 0.0, total, 1.0), 0.5)
    feats[t, 8] = close[t] / _rolling_mean(close, 20)[t - 19] - 1.0
    feats[t, 9] = close[t] / _rolling_mean(close, 60)[t - 59] - 1.0
    feats[t, 10] = _rolling_mean((high - low) / close, 15)[t - 14]
    vmean = _rolling_mean(volume, 60)[t - 59]
    vstd = _rolling_std(volume, 60)[t - 59]
    feats[t, 11] = np.where(vstd > 0.0, (volume[t] - vmean) / np.where(vstd > 0.0, vstd, 1.0), 0.0)

    k = HIT_WINDOW
    hits[t, 0] = windows((r > 0.0).astype(float), k).sum(axis=1)[t - k + 1] / k
    hits[t, 1] = windows((r < 0.0).astype(float), k).sum(axis=1)[t - k + 1] / k
    reversal = np.zeros(n)
    reversal[1:] = (r[1:] * r[:-1] < 0.0).astype(float)
    hits[t, 2] = windows(reversal, k).sum(axis=1)[t - k + 1] / k
    valid[t] = True
    return feats, hits, valid


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row divided by ln 3 (0 log 0 = 0)."""
    safe = np.where(p > 0.0, p, 1.0)
    return -(p * np.log(safe)).sum(axis=1) / np.log(3.0)


META_INPUTS = ["p_bull", "p_bear", "p_sideways", "entropy",
               "hit_bull", "hit_bear", "hit_sideways", "vol_15", "ret_15"]


def meta_inputs(regime_probs: np.ndarray, hits: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The meta-controller's input: regime output, its entropy, hit rates, context."""
    ent = entropy(regime_probs.astype(np.float64))
    return np.column_stack([regime_probs, ent, hits, feats[:, 4], feats[:, 2]])
