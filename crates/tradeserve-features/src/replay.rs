//! The embedded feature source: the bundled bars replayed on a live clock.
//!
//! All features are computed once at load (a few tens of milliseconds for the bundled data),
//! so a request is a lookup. Without a timestamp, the live clock picks the bar: it walks the
//! data at `speed` bars per bar-interval of wall time, wrapping around at the end, so decisions
//! change over time. With a timestamp `T`, the answer is the last bar whose close time is
//! `<= T` (no look-ahead); `T` before the first bar with features or after the data ends is
//! "no data" (HTTP 404).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use time::OffsetDateTime;
use tradeserve_core::ports::{
    BoxFuture, FeatureError, FeatureSnapshot, FeatureSource, SymbolCoverage,
};

use crate::bars::{BarError, SymbolBars, load_bars_csv};
use crate::compute::{BarFeatures, WARMUP, features_all};

/// Which bar "now" is.
#[derive(Debug, Clone, Copy)]
pub enum ReplayClock {
    /// Advance `speed` bars per `bar_seconds` of wall time from `start`.
    Live {
        start: Instant,
        speed: f64,
        bar_seconds: f64,
    },
    /// Always the bar at this offset from the first bar with features (tests).
    Fixed(usize),
}

impl ReplayClock {
    /// A live clock starting now.
    pub fn live(speed: f64) -> ReplayClock {
        ReplayClock::Live {
            start: Instant::now(),
            speed,
            bar_seconds: 60.0,
        }
    }

    fn offset(&self) -> usize {
        match *self {
            ReplayClock::Live {
                start,
                speed,
                bar_seconds,
            } => (start.elapsed().as_secs_f64() * speed / bar_seconds) as usize,
            ReplayClock::Fixed(i) => i,
        }
    }
}

struct Series {
    ts: Vec<i64>,
    close: Vec<f64>,
    /// Features of bars `WARMUP..`, index `i` ↔ bar `WARMUP + i`.
    features: Vec<BarFeatures>,
}

impl Series {
    fn build(bars: &SymbolBars) -> Option<Series> {
        let features: Vec<BarFeatures> = features_all(bars).into_iter().flatten().collect();
        if features.is_empty() {
            return None;
        }
        Some(Series {
            ts: bars.ts.clone(),
            close: bars.close.clone(),
            features,
        })
    }

    fn snapshot(&self, bar: usize) -> Result<FeatureSnapshot, FeatureError> {
        let f = &self.features[bar - WARMUP];
        let as_of = OffsetDateTime::from_unix_timestamp(self.ts[bar])
            .map_err(|e| FeatureError::Unavailable(format!("bad bar timestamp: {e}")))?;
        Ok(FeatureSnapshot {
            as_of,
            price: self.close[bar],
            features: f.features,
            hit_rates: f.hit_rates,
        })
    }
}

/// Replays bundled bars as a [`FeatureSource`].
pub struct MarketReplay {
    series: BTreeMap<String, Series>,
    clock: ReplayClock,
}

impl MarketReplay {
    /// Build from loaded bars; symbols too short to have features are left out.
    pub fn from_bars(bars: &BTreeMap<String, SymbolBars>, clock: ReplayClock) -> MarketReplay {
        let series = bars
            .iter()
            .filter_map(|(s, b)| Series::build(b).map(|x| (s.clone(), x)))
            .collect();
        MarketReplay { series, clock }
    }

    /// Load a bars CSV and build the replay.
    pub fn load(path: &Path, clock: ReplayClock) -> Result<MarketReplay, BarError> {
        Ok(MarketReplay::from_bars(&load_bars_csv(path)?, clock))
    }

    pub fn symbol_count(&self) -> usize {
        self.series.len()
    }

    fn lookup(
        &self,
        symbol: &str,
        as_of: Option<OffsetDateTime>,
    ) -> Result<FeatureSnapshot, FeatureError> {
        let s = self
            .series
            .get(symbol)
            .ok_or_else(|| FeatureError::UnknownSymbol(symbol.to_owned()))?;
        let bar = match as_of {
            None => WARMUP + self.clock.offset() % s.features.len(),
            Some(t) => {
                let t = t.unix_timestamp();
                let first = s.ts[WARMUP];
                let last = s.ts[s.ts.len() - 1];
                if t < first || t > last {
                    return Err(FeatureError::NoData(format!(
                        "no features for {symbol} as of that timestamp: data covers {} to {}",
                        fmt_ts(first),
                        fmt_ts(last)
                    )));
                }
                // Last bar that closed at or before t.
                s.ts.partition_point(|ts| *ts <= t) - 1
            }
        };
        s.snapshot(bar)
    }
}

/// A bar time as RFC 3339 (the number itself if it is out of range).
pub(crate) fn fmt_ts(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}

impl FeatureSource for MarketReplay {
    fn features<'a>(
        &'a self,
        symbol: &'a str,
        as_of: Option<OffsetDateTime>,
    ) -> BoxFuture<'a, Result<FeatureSnapshot, FeatureError>> {
        Box::pin(std::future::ready(self.lookup(symbol, as_of)))
    }

    /// Close-to-close return from the bar that closed at `as_of` to the next bar.
    fn next_bar_return(&self, symbol: &str, as_of: OffsetDateTime) -> Option<f64> {
        let s = self.series.get(symbol)?;
        let i = s.ts.binary_search(&as_of.unix_timestamp()).ok()?;
        let (now, next) = (*s.close.get(i)?, *s.close.get(i + 1)?);
        (now > 0.0).then(|| next / now - 1.0)
    }

    fn coverage(&self) -> Vec<SymbolCoverage> {
        self.series
            .iter()
            .filter_map(|(symbol, s)| {
                Some(SymbolCoverage {
                    symbol: symbol.clone(),
                    from: OffsetDateTime::from_unix_timestamp(s.ts[WARMUP]).ok()?,
                    to: OffsetDateTime::from_unix_timestamp(*s.ts.last()?).ok()?,
                    bars: s.ts.len(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(n: usize) -> SymbolBars {
        let mut b = SymbolBars::default();
        for i in 0..n {
            let p = 100.0 + (i as f64 * 0.7).sin();
            b.ts.push(1_760_000_000 + 60 * i as i64);
            b.high.push(p + 0.1);
            b.low.push(p - 0.1);
            b.close.push(p);
            b.volume.push(1000.0 + (i % 7) as f64 * 10.0);
        }
        b
    }

    #[test]
    fn next_bar_return_is_close_to_close() {
        let r = replay(ReplayClock::Fixed(0));
        let b = bars(100);
        let at = OffsetDateTime::from_unix_timestamp(b.ts[40]).unwrap();
        let got = r.next_bar_return("AAA", at).unwrap();
        assert!((got - (b.close[41] / b.close[40] - 1.0)).abs() < 1e-15);
        let last = OffsetDateTime::from_unix_timestamp(b.ts[99]).unwrap();
        assert_eq!(
            r.next_bar_return("AAA", last),
            None,
            "no bar after the last"
        );
        assert_eq!(r.next_bar_return("NOPE", at), None);
    }

    fn replay(clock: ReplayClock) -> MarketReplay {
        let mut m = BTreeMap::new();
        m.insert("AAA".to_owned(), bars(100));
        m.insert("SHORT".to_owned(), bars(WARMUP));
        MarketReplay::from_bars(&m, clock)
    }

    fn at(t: i64) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(t).ok()
    }

    #[test]
    fn point_in_time_uses_the_last_closed_bar() {
        let r = replay(ReplayClock::Fixed(0));
        let first = 1_760_000_000 + 60 * WARMUP as i64;
        let s = r.lookup("AAA", at(first)).unwrap();
        assert_eq!(s.as_of.unix_timestamp(), first);
        // 59 s later the next bar has not closed yet.
        let s = r.lookup("AAA", at(first + 59)).unwrap();
        assert_eq!(s.as_of.unix_timestamp(), first);
        let s = r.lookup("AAA", at(first + 60)).unwrap();
        assert_eq!(s.as_of.unix_timestamp(), first + 60);
    }

    #[test]
    fn outside_the_data_is_no_data_and_unknown_symbols_are_unknown() {
        let r = replay(ReplayClock::Fixed(0));
        let first = 1_760_000_000 + 60 * WARMUP as i64;
        assert!(matches!(
            r.lookup("AAA", at(first - 1)),
            Err(FeatureError::NoData(_))
        ));
        assert!(matches!(
            r.lookup("AAA", at(1_760_000_000 + 6000)),
            Err(FeatureError::NoData(_))
        ));
        assert_eq!(
            r.lookup("ZZZ", None),
            Err(FeatureError::UnknownSymbol("ZZZ".into()))
        );
        // Too short to ever have features: not served at all.
        assert_eq!(
            r.lookup("SHORT", None),
            Err(FeatureError::UnknownSymbol("SHORT".into()))
        );
        assert_eq!(r.coverage().len(), 1);
    }

    #[test]
    fn live_clock_walks_and_wraps() {
        let r = replay(ReplayClock::Fixed(3));
        let s = r.lookup("AAA", None).unwrap();
        assert_eq!(
            s.as_of.unix_timestamp(),
            1_760_000_000 + 60 * (WARMUP as i64 + 3)
        );
        // 40 bars have features; offset 43 wraps to 3.
        let r = replay(ReplayClock::Fixed(43));
        assert_eq!(r.lookup("AAA", None).unwrap(), s);
    }
}
