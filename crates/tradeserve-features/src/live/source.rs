//! [`LiveFeatures`]: the live [`FeatureSource`]. Bars are applied one symbol at a time under
//! that symbol's lock (held only to apply one bar, or to copy one snapshot: never across an
//! await), so ingest on one symbol never waits for another, and a request reads one
//! consistent state of its symbol.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tradeserve_core::bounded::PositiveDuration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use time::OffsetDateTime;
use tradeserve_core::ports::{
    BoxFuture, FeatureError, FeatureSnapshot, FeatureSource, SymbolCoverage,
};

use crate::compute::WARMUP;
use crate::live::bar::{Bar, Rejection};
use crate::live::series::{Applied, Point, RawBar, Series};
use crate::replay::fmt_ts;

/// `[features.live]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    /// A decision whose newest bar is older than this is refused (`stale_features`).
    pub max_bar_age: PositiveDuration,
    /// Bars of features kept per symbol for point-in-time requests (5 trading days of
    /// one-minute bars by default).
    pub retain_bars: std::num::NonZeroUsize,
    /// A bar earlier than its symbol's newest by at most this is put in its place; an
    /// earlier one is rejected as late.
    pub reorder_window: Duration,
    /// When set, bars of other symbols are rejected.
    pub universe: Option<BTreeSet<String>>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            max_bar_age: PositiveDuration::secs(120),
            retain_bars: tradeserve_core::bounded::at_least_one_usize(5 * 390),
            reorder_window: Duration::from_secs(300),
            universe: None,
        }
    }
}

/// What a clock says now (tests pin it).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// What applying one bar did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ingested {
    Appended,
    Reordered,
    Duplicate,
}

/// One symbol as `GET /api/v1/symbols` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SymbolStatus {
    pub symbol: String,
    /// The newest bar's end (null before the first bar).
    #[serde(with = "time::serde::rfc3339::option")]
    pub newest_bar: Option<OffsetDateTime>,
    /// Seconds since the newest bar's end.
    pub age_s: Option<f64>,
    /// Bars of features held for timestamp requests (point-in-time history).
    pub bars: usize,
    /// `live`, `warming_up` (fewer bars than the longest window) or `stale` (the newest bar
    /// older than `features.live.max_bar_age`).
    #[cfg_attr(feature = "openapi", schema(schema_with = live_status))]
    pub status: &'static str,
}

/// The schema of [`SymbolStatus::status`].
#[cfg(feature = "openapi")]
fn live_status() -> utoipa::openapi::schema::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["live", "warming_up", "stale"]))
        .build()
}

/// See the module docs.
pub struct LiveFeatures {
    config: LiveConfig,
    symbols: RwLock<HashMap<String, Arc<Mutex<Series>>>>,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
    clock: Clock,
}

impl LiveFeatures {
    /// On the system clock.
    pub fn new(config: LiveConfig) -> LiveFeatures {
        LiveFeatures::with_clock(config, Arc::new(OffsetDateTime::now_utc))
    }

    pub fn with_clock(config: LiveConfig, clock: Clock) -> LiveFeatures {
        LiveFeatures {
            config,
            symbols: RwLock::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: Default::default(),
            clock,
        }
    }

    /// Check and apply one bar; a rejection is counted under its reason.
    pub fn ingest(&self, bar: &Bar) -> Result<Ingested, Rejection> {
        let result = self.apply(bar);
        match result {
            Ok(Ingested::Duplicate) => self.duplicates.fetch_add(1, Ordering::Relaxed),
            Ok(_) => self.accepted.fetch_add(1, Ordering::Relaxed),
            Err(r) => self.rejected[r as usize].fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    /// [`Self::ingest`] of one JSON bar (unreadable is `malformed`, counted).
    pub fn ingest_json(&self, bytes: &[u8]) -> Result<Ingested, Rejection> {
        match Bar::from_json(bytes) {
            Ok(bar) => self.ingest(&bar),
            Err(r) => self.reject(r),
        }
    }

    /// Count a bar rejected before it could be read (`Err(reason)`, for `?`).
    pub fn reject(&self, reason: Rejection) -> Result<Ingested, Rejection> {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
        Err(reason)
    }

    fn apply(&self, bar: &Bar) -> Result<Ingested, Rejection> {
        bar.check(self.config.universe.as_ref())?;
        if bar.end > (self.clock)() + time::Duration::minutes(1) {
            return Err(Rejection::Future);
        }
        let series = self.series(&bar.symbol);
        let raw = RawBar {
            ts: bar.end.unix_timestamp(),
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
        };
        let window = i64::try_from(self.config.reorder_window.as_secs()).unwrap_or(i64::MAX);
        let applied = series.lock().apply(raw, window);
        match applied {
            Ok(Applied::Appended) => Ok(Ingested::Appended),
            Ok(Applied::Reordered) => Ok(Ingested::Reordered),
            Ok(Applied::Duplicate) => Ok(Ingested::Duplicate),
            Err(_) => Err(Rejection::Late),
        }
    }

    /// The symbol's series, created on its first bar.
    fn series(&self, symbol: &str) -> Arc<Mutex<Series>> {
        if let Some(s) = self.symbols.read().get(symbol) {
            return Arc::clone(s);
        }
        let slack = usize::try_from(self.config.reorder_window.as_secs() / 60).unwrap_or(0) + 2;
        let retain = self.config.retain_bars;
        Arc::clone(
            self.symbols
                .write()
                .entry(symbol.to_owned())
                .or_insert_with(|| Arc::new(Mutex::new(Series::new(slack, retain.get())))),
        )
    }

    /// Bars applied (new or reordered), duplicates, and rejections by reason.
    pub fn counts(&self) -> (u64, u64, BTreeMap<Rejection, u64>) {
        let rejected = Rejection::ALL
            .iter()
            .map(|r| (*r, self.rejected[*r as usize].load(Ordering::Relaxed)))
            .collect();
        (
            self.accepted.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            rejected,
        )
    }

    /// Every symbol's newest bar, age, bars held and status.
    pub fn status(&self) -> Vec<SymbolStatus> {
        let now = (self.clock)();
        let mut out: Vec<SymbolStatus> = self
            .symbols
            .read()
            .iter()
            .map(|(symbol, s)| {
                let s = s.lock();
                let newest = s
                    .newest()
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
                let age = newest.map(|t| (now - t).as_seconds_f64());
                let status = match (s.history().is_empty(), age) {
                    (true, _) => "warming_up",
                    (false, Some(a)) if a > self.config.max_bar_age.as_secs_f64() => "stale",
                    _ => "live",
                };
                SymbolStatus {
                    symbol: symbol.clone(),
                    newest_bar: newest,
                    age_s: age,
                    bars: s.history().len(),
                    status,
                }
            })
            .collect();
        out.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        out
    }

    fn lookup(
        &self,
        symbol: &str,
        as_of: Option<OffsetDateTime>,
    ) -> Result<FeatureSnapshot, FeatureError> {
        let series = self
            .symbols
            .read()
            .get(symbol)
            .cloned()
            .ok_or_else(|| FeatureError::UnknownSymbol(symbol.to_owned()))?;
        let point = {
            let s = series.lock();
            let h = s.history();
            if h.is_empty() {
                return Err(FeatureError::WarmingUp {
                    symbol: symbol.to_owned(),
                    bars: s.bars(),
                    needed: WARMUP + 1,
                });
            }
            match as_of {
                None => h.back().copied(),
                Some(t) => {
                    let t = t.unix_timestamp();
                    let i = h.partition_point(|p| p.ts <= t);
                    if i == 0 {
                        let from = h.front().map(|p| p.ts);
                        return Err(FeatureError::NoData(format!(
                            "no features for {symbol} as of that timestamp: retained history starts at {}",
                            from.map(fmt_ts).unwrap_or_default()
                        )));
                    }
                    h.get(i - 1).copied()
                }
            }
        };
        let point =
            point.ok_or_else(|| FeatureError::Unavailable(format!("{symbol} has no features")))?;
        if as_of.is_none() {
            self.check_fresh(symbol, &point)?;
        }
        snapshot(&point)
    }

    fn check_fresh(&self, symbol: &str, point: &Point) -> Result<(), FeatureError> {
        let end = OffsetDateTime::from_unix_timestamp(point.ts)
            .map_err(|e| FeatureError::Unavailable(format!("bad bar time: {e}")))?;
        let age = (self.clock)() - end;
        let max = self.config.max_bar_age.get();
        if age > max {
            return Err(FeatureError::Stale {
                symbol: symbol.to_owned(),
                age: age.unsigned_abs(),
                max,
            });
        }
        Ok(())
    }
}

fn snapshot(p: &Point) -> Result<FeatureSnapshot, FeatureError> {
    Ok(FeatureSnapshot {
        as_of: OffsetDateTime::from_unix_timestamp(p.ts)
            .map_err(|e| FeatureError::Unavailable(format!("bad bar time: {e}")))?,
        price: p.close,
        features: p.features.features,
        hit_rates: p.features.hit_rates,
    })
}

impl FeatureSource for LiveFeatures {
    fn features<'a>(
        &'a self,
        symbol: &'a str,
        as_of: Option<OffsetDateTime>,
    ) -> BoxFuture<'a, Result<FeatureSnapshot, FeatureError>> {
        Box::pin(std::future::ready(self.lookup(symbol, as_of)))
    }

    fn coverage(&self) -> Vec<SymbolCoverage> {
        self.symbols
            .read()
            .iter()
            .filter_map(|(symbol, s)| {
                let s = s.lock();
                let h = s.history();
                Some(SymbolCoverage {
                    symbol: symbol.clone(),
                    from: OffsetDateTime::from_unix_timestamp(h.front()?.ts).ok()?,
                    to: OffsetDateTime::from_unix_timestamp(h.back()?.ts).ok()?,
                    bars: h.len(),
                })
            })
            .collect()
    }
}
