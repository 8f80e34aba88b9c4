//! What the ensemble decides on: one symbol's features as of one bar, and the data a
//! feature source can serve. Plain data, imported by the ports and the domain alike.

use time::OffsetDateTime;

use crate::schema::{FEATURE_WIDTH, HIT_RATES};

/// Features of one symbol as of one bar.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSnapshot {
    /// Close time of the bar the features describe (no later bar was used).
    pub as_of: OffsetDateTime,
    /// Last traded price (the bar's close), used for sizing and risk.
    pub price: f64,
    /// Model inputs, in [`crate::schema::FEATURES`] order.
    pub features: [f64; FEATURE_WIDTH],
    /// Strategy hit rates, in [`crate::schema::HIT_RATES`] order.
    pub hit_rates: [f64; HIT_RATES.len()],
}

/// Data a feature source can serve for a symbol.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SymbolCoverage {
    pub symbol: String,
    /// First instant with features.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// Last bar.
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub bars: usize,
}
