//! One live one-minute bar as a feed sends it (`schemas/bar.schema.json`), and the checks it
//! must pass before it may touch a symbol's state. A bar that fails is rejected with a reason
//! (counted by the caller), never half-applied.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A live one-minute bar as the feed sends it: the Kafka topic's value (key = symbol) and each
/// element of `POST /api/v1/bars`; `end` is the bar's close time. Bars of a symbol are applied
/// in `end` order; one earlier than the symbol's newest by at most
/// `features.live.reorder_window` is put in its place, an earlier one is rejected as late; a
/// second bar with the same symbol and end is a duplicate and changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Bar {
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Z][A-Z0-9.\-]{0,11}$"))]
    pub symbol: String,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0))]
    pub open: f64,
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0))]
    pub high: f64,
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0))]
    pub low: f64,
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0))]
    pub close: f64,
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub volume: f64,
}

/// Why a bar was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// Not a bar: unreadable JSON, a missing or unknown field, a wrong type.
    Malformed,
    /// The symbol is not a valid ticker.
    InvalidSymbol,
    /// A universe is configured and the symbol is not in it.
    UnknownSymbol,
    /// NaN or infinity in a price or the volume.
    NotFinite,
    /// A price at or below zero.
    NonPositivePrice,
    /// `high` below `low`.
    HighBelowLow,
    /// `open` or `close` outside `low..=high`.
    OutsideRange,
    /// Negative volume.
    NegativeVolume,
    /// Older than the newest bar of its symbol by more than the reorder window (or than
    /// the bars kept to recompute from).
    Late,
    /// Ending more than a minute after this service's clock: a feed with a wrong clock.
    Future,
}

impl Rejection {
    pub const ALL: [Rejection; 10] = [
        Rejection::Malformed,
        Rejection::InvalidSymbol,
        Rejection::UnknownSymbol,
        Rejection::NotFinite,
        Rejection::NonPositivePrice,
        Rejection::HighBelowLow,
        Rejection::OutsideRange,
        Rejection::NegativeVolume,
        Rejection::Late,
        Rejection::Future,
    ];

    /// The reason as metrics and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::InvalidSymbol => "invalid_symbol",
            Rejection::UnknownSymbol => "unknown_symbol",
            Rejection::NotFinite => "not_finite",
            Rejection::NonPositivePrice => "non_positive_price",
            Rejection::HighBelowLow => "high_below_low",
            Rejection::OutsideRange => "outside_range",
            Rejection::NegativeVolume => "negative_volume",
            Rejection::Late => "late",
            Rejection::Future => "future",
        }
    }
}

impl Bar {
    /// Read one bar from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Bar, Rejection> {
        serde_json::from_slice(bytes).map_err(|_| Rejection::Malformed)
    }

    /// The checks that need no state: a valid symbol (in `universe`, when given), finite
    /// positive prices with `low <= open, close <= high`, and a volume of at least zero.
    pub fn check(&self, universe: Option<&BTreeSet<String>>) -> Result<(), Rejection> {
        if tradeserve_core::Symbol::parse(&self.symbol).is_err() {
            return Err(Rejection::InvalidSymbol);
        }
        if universe.is_some_and(|u| !u.contains(&self.symbol)) {
            return Err(Rejection::UnknownSymbol);
        }
        let prices = [self.open, self.high, self.low, self.close];
        if !prices.iter().chain([&self.volume]).all(|v| v.is_finite()) {
            return Err(Rejection::NotFinite);
        }
        if prices.iter().any(|p| *p <= 0.0) {
            return Err(Rejection::NonPositivePrice);
        }
        if self.high < self.low {
            return Err(Rejection::HighBelowLow);
        }
        let inside = |p: f64| self.low <= p && p <= self.high;
        if !(inside(self.open) && inside(self.close)) {
            return Err(Rejection::OutsideRange);
        }
        if self.volume < 0.0 {
            return Err(Rejection::NegativeVolume);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar() -> Bar {
        Bar {
            symbol: "AAPL".into(),
            end: OffsetDateTime::UNIX_EPOCH,
            open: 100.0,
            high: 101.0,
            low: 99.0,
            close: 100.5,
            volume: 1_000.0,
        }
    }

    #[test]
    fn each_defect_has_its_reason() {
        assert_eq!(bar().check(None), Ok(()));
        type Spoil = fn(&mut Bar);
        let cases: [(Spoil, Rejection); 8] = [
            (
                |b| b.symbol = "not a symbol".into(),
                Rejection::InvalidSymbol,
            ),
            (|b| b.close = f64::NAN, Rejection::NotFinite),
            (|b| b.volume = f64::INFINITY, Rejection::NotFinite),
            (|b| b.low = 0.0, Rejection::NonPositivePrice),
            (|b| b.high = 98.0, Rejection::HighBelowLow),
            (|b| b.close = 102.0, Rejection::OutsideRange),
            (|b| b.open = 98.5, Rejection::OutsideRange),
            (|b| b.volume = -1.0, Rejection::NegativeVolume),
        ];
        for (spoil, reason) in cases {
            let mut b = bar();
            spoil(&mut b);
            assert_eq!(b.check(None), Err(reason), "{b:?}");
        }
        let universe: BTreeSet<String> = ["MSFT".to_owned()].into();
        assert_eq!(bar().check(Some(&universe)), Err(Rejection::UnknownSymbol));
    }

    #[test]
    fn json_bars_read_and_anything_else_is_malformed() {
        let ok = br#"{"symbol":"AAPL","end":"2025-10-14T15:00:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}"#;
        assert_eq!(Bar::from_json(ok).unwrap().close, 1.5);
        for bad in [
            &b"{"[..],
            br#"{"symbol":"AAPL"}"#,
            br#"{"symbol":"AAPL","end":"yesterday","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}"#,
            br#"{"symbol":"AAPL","end":"2025-10-14T15:00:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10,"extra":1}"#,
        ] {
            assert_eq!(Bar::from_json(bad), Err(Rejection::Malformed));
        }
    }
}
