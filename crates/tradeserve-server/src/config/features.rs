//! `[features]`: where features come from — the bundled bars replayed on a live clock, or the
//! live source fed by `POST /api/v1/bars` and a Kafka topic.

use std::path::PathBuf;
use std::time::Duration;
use tradeserve_core::bounded::PositiveDuration;
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};

/// Where features come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesConfig {
    /// `replay` (the bundled bars on a live clock, the default) or `live` (bars from a feed:
    /// `POST /api/v1/bars`).
    pub source: FeatureSourceKind,
    /// Bars CSV replayed by the embedded feature source.
    pub bars: PathBuf,
    /// Replay speed: bars per minute of wall time (1.0 = real time).
    pub replay_speed: f64,
    /// The live source's settings.
    pub live: LiveFeaturesConfig,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            source: FeatureSourceKind::Replay,
            bars: PathBuf::from("data/bars.csv"),
            replay_speed: 1.0,
            live: LiveFeaturesConfig::default(),
        }
    }
}

/// `features.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSourceKind {
    Replay,
    Live,
}

/// `[features.live]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveFeaturesConfig {
    /// A decision whose symbol's newest bar ended longer ago than this is refused
    /// (503 `stale_features`).
    pub max_bar_age: PositiveDuration,
    /// Bars of features kept per symbol for `timestamp` requests (1,950: five trading days).
    pub retain_bars: std::num::NonZeroUsize,
    /// A bar earlier than its symbol's newest by at most this is put in its place; an earlier
    /// one is rejected as late.
    #[serde(with = "humantime_serde")]
    pub reorder_window: Duration,
    /// Symbols accepted (empty: any valid symbol).
    pub universe: Vec<String>,
    /// Largest `POST /api/v1/bars` body (the service's `server.body_limit_bytes`, 16 KiB, is
    /// sized for decisions: about 120 bars). 1 MiB is about 8,000 bars.
    pub post_limit_bytes: usize,
    /// The Kafka topic of bars (`[features.live.kafka]`; no brokers: `POST /api/v1/bars` only).
    pub kafka: tradeserve_features::live::kafka::KafkaFeedConfig,
}

impl Default for LiveFeaturesConfig {
    fn default() -> Self {
        let d = tradeserve_features::live::LiveConfig::default();
        LiveFeaturesConfig {
            max_bar_age: d.max_bar_age,
            retain_bars: d.retain_bars,
            reorder_window: d.reorder_window,
            universe: Vec::new(),
            post_limit_bytes: 1024 * 1024,
            kafka: Default::default(),
        }
    }
}

impl LiveFeaturesConfig {
    /// The feature crate's settings.
    pub fn live_config(&self) -> tradeserve_features::live::LiveConfig {
        tradeserve_features::live::LiveConfig {
            max_bar_age: self.max_bar_age,
            retain_bars: self.retain_bars,
            reorder_window: self.reorder_window,
            universe: (!self.universe.is_empty()).then(|| self.universe.iter().cloned().collect()),
        }
    }

    pub(super) fn validate(&self) -> Result<(), InvalidSetting> {
        if self.post_limit_bytes < 1024 {
            return Err("features.live.post_limit_bytes must be at least 1024".into());
        }
        match self
            .universe
            .iter()
            .find(|s| tradeserve_core::Symbol::parse(s).is_err())
        {
            Some(bad) => {
                Err(format!("features.live.universe: {bad:?} is not a valid symbol").into())
            }
            None => Ok(()),
        }
    }
}
