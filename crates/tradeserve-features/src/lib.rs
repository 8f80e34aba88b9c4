//! Features for the decision pipeline, with no training/serving skew.
//!
//! - [`compute`]: the feature set, the Rust twin of `training/features.py` (parity-tested).
//! - [`bars`]: loading and checking the bundled one-minute bars.
//! - [`live`]: the live feature source: bars from a feed, checked, applied incrementally,
//!   fresh or refused as stale, with point-in-time history.
//! - [`replay`]: the embedded [`FeatureSource`](tradeserve_core::ports::FeatureSource): replays
//!   the bundled bars on a live clock and answers point-in-time requests without look-ahead.

pub mod bars;
pub mod compute;
pub mod live;
pub mod replay;

pub use bars::{BarError, SymbolBars, load_bars_csv};
pub use replay::{MarketReplay, ReplayClock};
