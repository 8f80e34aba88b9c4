//! `[drift]`: how the live service watches its inputs and decisions drift from what the
//! champion was trained and backtested on (see `crate::drift`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tradeserve_core::error::InvalidSetting;

/// The drift monitor's window and thresholds of evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// The window the live distributions are taken over (kept as 12 slots of a twelfth each).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Inputs (distinct symbol and bar) the window needs before a PSI is computed (fewer: the
    /// series are NaN).
    pub min_samples: u64,
    /// Trading days of `features.bars` the champion is backtested over for the expected
    /// action and regime mix.
    pub backtest_days: u32,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            window: Duration::from_secs(3600),
            min_samples: 500,
            backtest_days: 2,
        }
    }
}

impl DriftConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidSetting> {
        if self.window < Duration::from_secs(12) {
            return Err("drift.window must be at least 12s".to_owned().into());
        }
        if !(1..=365).contains(&self.backtest_days) {
            return Err("drift.backtest_days must be 1-365".to_owned().into());
        }
        Ok(())
    }
}
