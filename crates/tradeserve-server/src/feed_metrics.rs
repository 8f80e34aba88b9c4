//! The live feed's series: bars by result (`tradeserve_bars_total{result}`: applied,
//! duplicate, or the rejection reason), symbols by status, and the age of the
//! stalest symbol's newest bar. The live source counts as it ingests; [`FeedMetrics::refresh`]
//! brings these up to date before each scrape.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tradeserve_features::live::{LiveFeatures, Rejection};

use tradeserve_features::live::kafka::FeedState;

/// See the module docs.
#[derive(Clone)]
pub struct FeedMetrics {
    bars: IntCounterVec,
    symbols: IntGaugeVec,
    oldest_age: IntGauge,
    lag: IntGauge,
}

const STATUSES: [&str; 3] = ["live", "warming_up", "stale"];

impl FeedMetrics {
    pub fn new(registry: &Registry) -> Result<FeedMetrics, prometheus::Error> {
        let bars = IntCounterVec::new(
            Opts::new(
                "tradeserve_bars_total",
                "Live bars by result: applied, duplicate, or the reason it was rejected",
            ),
            &["result"],
        )?;
        let symbols = IntGaugeVec::new(
            Opts::new(
                "tradeserve_feed_symbols",
                "Symbols of the live feed by status (live, warming_up, stale)",
            ),
            &["status"],
        )?;
        let oldest_age = IntGauge::new(
            "tradeserve_feed_oldest_bar_age_seconds",
            "Seconds since the newest bar of the stalest symbol of the live feed ended",
        )?;
        let lag = IntGauge::new(
            "tradeserve_feed_lag_records",
            "Records of the market data topic not read yet (the Kafka feed)",
        )?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(bars.clone()))?;
        registry.register(Box::new(symbols.clone()))?;
        registry.register(Box::new(oldest_age.clone()))?;
        // Every status exists from the start (0 without a live feed), so dashboards and alerts
        // over it read 0 rather than no data.
        for s in STATUSES {
            symbols.with_label_values(&[s]).set(0);
        }
        Ok(FeedMetrics {
            bars,
            symbols,
            oldest_age,
            lag,
        })
    }

    /// Bring the series up to date with `live`'s counts and symbols (and the Kafka
    /// consumer's lag, when there is one).
    pub fn refresh(&self, live: &LiveFeatures, feed: Option<&FeedState>) {
        if let Some(feed) = feed {
            self.lag
                .set(feed.lag.load(std::sync::atomic::Ordering::Relaxed));
        }
        let (accepted, duplicates, rejected) = live.counts();
        let set = |result: &str, total: u64| {
            let c = self.bars.with_label_values(&[result]);
            c.inc_by(total.saturating_sub(c.get()));
        };
        set("applied", accepted);
        set("duplicate", duplicates);
        for reason in Rejection::ALL {
            set(reason.as_str(), rejected.get(&reason).copied().unwrap_or(0));
        }
        let status = live.status();
        for s in STATUSES {
            let n = status.iter().filter(|x| x.status == s).count();
            self.symbols
                .with_label_values(&[s])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let oldest = status.iter().filter_map(|s| s.age_s).fold(0.0f64, f64::max);
        self.oldest_age.set(oldest as i64);
    }
}
