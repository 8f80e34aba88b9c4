"""Deterministic synthetic market data with real regime structure.

Each symbol follows its own three-state Markov-switching process (bull, bear, sideways) on
one-minute bars during US regular trading hours (14:30-21:00 UTC, 390 bars a day):

* bull: positive drift, moderate volatility;
* bear: negative drift, higher volatility and volume (fear);
* sideways: no drift, low volatility, mean reversion of the log price towards an anchor.

Returns have fat tails (Student-t, 5 degrees of freedom). Volume follows an intraday U shape,
a per-symbol base level, the regime, and the size of the move. The ground-truth regime of every
bar is written beside it so that the regime detector can be scored against the truth.

Everything is driven by one seeded PCG64 generator, so the output is byte-for-byte identical on
every run.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 20251006
BARS_PER_DAY = 390
SESSION_OPEN_UTC = dt.time(14, 30)
FIRST_DAY = dt.date(2025, 10, 6)  # a Monday
TRADING_DAYS = 12

# (symbol, starting price, base volume per minute)
SYMBOLS: list[tuple[str, float, float]] = [
    ("AAPL", 227.0, 90_000), ("MSFT", 415.0, 40_000), ("NVDA", 131.0, 400_000),
    ("AMZN", 186.0, 70_000), ("GOOGL", 163.0, 60_000), ("META", 580.0, 30_000),
    ("TSLA", 250.0, 180_000), ("JPM", 221.0, 18_000), ("BAC", 41.0, 80_000),
    ("XOM", 118.0, 35_000), ("CVX", 148.0, 18_000), ("JNJ", 161.0, 15_000),
    ("PFE", 29.0, 70_000), ("KO", 70.0, 30_000), ("PEP", 168.0, 12_000),
    ("WMT", 81.0, 40_000), ("HD", 410.0, 9_000), ("DIS", 95.0, 22_000),
    ("NFLX", 720.0, 6_000), ("INTC", 23.0, 150_000), ("AMD", 165.0, 110_000),
    ("BRK.B", 455.0, 9_000), ("SPY", 575.0, 120_000), ("QQQ", 490.0, 80_000),
]

REGIMES = ("bull", "bear", "sideways")
# Per-minute transition matrix: regimes persist for roughly half a trading day on average.
TRANSITIONS = np.array(
    [
        [0.9950, 0.0020, 0.0030],
        [0.0025, 0.9945, 0.0030],
        [0.0025, 0.0020, 0.9955],
    ]
)
DRIFT = np.array([0.00012, -0.00014, 0.0])
VOL = np.array([0.0008, 0.0013, 0.0005])
VOLUME_MULT = np.array([1.0, 1.6, 0.7])
MEAN_REVERSION = 0.04  # sideways: pull per minute towards the anchor, in log price


@dataclass(frozen=True)
class Bar:
    symbol: str
    ts: int  # bar close time, Unix seconds (UTC)
    open: float
    high: float
    low: float
    close: float
    volume: int
    regime: int


def trading_days() -> list[dt.date]:
    days: list[dt.date] = []
    day = FIRST_DAY
    while len(days) < TRADING_DAYS:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def bar_close_times() -> list[int]:
    times: list[int] = []
    for day in trading_days():
        start = dt.datetime.combine(day, SESSION_OPEN_UTC, tzinfo=dt.timezone.utc)
        for minute in range(1, BARS_PER_DAY + 1):
            times.append(int((start + dt.timedelta(minutes=minute)).timestamp()))
    return times


def intraday_volume_shape() -> np.ndarray:
    x = np.linspace(-1.0, 1.0, BARS_PER_DAY)
    return 0.6 + 1.4 * x**2  # U shape: busy open and close, quiet lunch


def simulate_symbol(rng: np.random.Generator, symbol: str, price0: float, base_volume: float,
                    times: list[int]) -> list[Bar]:
    n = len(times)
    shape = np.tile(intraday_volume_shape(), n // BARS_PER_DAY)
    regime = int(rng.integers(0, 3))
    log_price = float(np.log(price0))
    anchor = log_price
    bars: list[Bar] = []
    shocks = rng.standard_t(5, size=n) / np.sqrt(5.0 / 3.0)  # unit variance
    wick_noise = np.abs(rng.normal(size=(n, 2)))
    volume_noise = rng.lognormal(mean=0.0, sigma=0.35, size=n)
    uniforms = rng.random(size=n)
    gaps = rng.normal(scale=0.002, size=n)
    for i in range(n):
        if i > 0:
            cumulative = np.cumsum(TRANSITIONS[regime])
            regime = int(np.searchsorted(cumulative, uniforms[i], side="right"))
            regime = min(regime, 2)
        if regime != 2:
            anchor = log_price
        open_log = log_price + (gaps[i] if i > 0 and i % BARS_PER_DAY == 0 else 0.0)
        ret = DRIFT[regime] + VOL[regime] * shocks[i]
        if regime == 2:
            ret += -MEAN_REVERSION * (open_log - anchor)
        close_log = open_log + ret
        o, c = float(np.exp(open_log)), float(np.exp(close_log))
        wick = VOL[regime] * 0.6
        hi = max(o, c) * (1.0 + wick * wick_noise[i, 0])
        lo = min(o, c) * (1.0 - wick * wick_noise[i, 1])
        move = abs(ret) / VOL[regime]
        volume = base_volume * shape[i] * VOLUME_MULT[regime] * (0.7 + 0.3 * move) * volume_noise[i]
        bars.append(Bar(symbol, times[i], round(o, 4), round(hi, 4), round(lo, 4), round(c, 4),
                        int(volume), regime))
        log_price = close_log
    return bars


def simulate() -> list[Bar]:
    rng = np.random.Generator(np.random.PCG64(SEED))
    times = bar_close_times()
    bars: list[Bar] = []
    for symbol, price0, base_volume in SYMBOLS:
        bars.extend(simulate_symbol(rng, symbol, price0, base_volume, times))
    return bars


def write_csv(bars: list[Bar], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["symbol", "ts", "open", "high", "low", "close", "volume", "regime"])
        for b in bars:
            w.writerow([b.symbol, b.ts, f"{b.open:.4f}", f"{b.high:.4f}", f"{b.low:.4f}",
                        f"{b.close:.4f}", b.volume, REGIMES[b.regime]])
