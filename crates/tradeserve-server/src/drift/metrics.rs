//! The drift monitor's series (`tradeserve_drift_*`): every feature's PSI, the action and
//! regime mixes (live and backtest) and their PSI, the window's decisions. A figure not
//! computed yet (too few decisions, no reference, no backtest) is NaN, which no alert fires on.

use prometheus::{Gauge, GaugeVec, IntGauge, Opts, Registry};
use tradeserve_core::schema::FEATURES;

use super::{DriftSummary, Mix};

/// See the module docs.
#[derive(Clone)]
pub struct DriftMetrics {
    feature_psi: GaugeVec,
    share: GaugeVec,
    action_psi: Gauge,
    regime_psi: Gauge,
    decisions: IntGauge,
    hit_rate: GaugeVec,
    hit_rate_p_value: Gauge,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
    let g = Gauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    g.set(f64::NAN);
    Ok(g)
}

impl DriftMetrics {
    pub fn new(registry: &Registry) -> Result<DriftMetrics, prometheus::Error> {
        let feature_psi = GaugeVec::new(
            Opts::new(
                "tradeserve_drift_feature_psi",
                "Population stability index of each input feature over the drift window against the champion's training distribution",
            ),
            &["feature"],
        )?;
        registry.register(Box::new(feature_psi.clone()))?;
        for f in FEATURES {
            feature_psi.with_label_values(&[f]).set(f64::NAN);
        }
        let share = GaugeVec::new(
            Opts::new(
                "tradeserve_drift_share",
                "Share of each action (BUY/SELL/HOLD) and mean probability of each regime over the drift window (source=live) and in the champion's backtest (source=backtest)",
            ),
            &["kind", "name", "source"],
        )?;
        registry.register(Box::new(share.clone()))?;
        let decisions = IntGauge::new(
            "tradeserve_drift_window_samples",
            "Inputs in the drift window: one per symbol and bar decided",
        )?;
        registry.register(Box::new(decisions.clone()))?;
        let hit_rate = GaugeVec::new(
            Opts::new(
                "tradeserve_drift_hit_rate",
                "Hit rate of orders (next-bar outcome) over the drift window (source=live) and in the champion's backtest (source=backtest)",
            ),
            &["source"],
        )?;
        registry.register(Box::new(hit_rate.clone()))?;
        for source in ["live", "backtest"] {
            hit_rate.with_label_values(&[source]).set(f64::NAN);
        }
        Ok(DriftMetrics {
            hit_rate,
            hit_rate_p_value: gauge(
                registry,
                "tradeserve_drift_hit_rate_p_value",
                "One-sided binomial test of the drift window's order hit rate against the champion's backtest: small when live orders hit less often than chance explains",
            )?,
            feature_psi,
            share,
            action_psi: gauge(
                registry,
                "tradeserve_drift_action_psi",
                "PSI of the drift window's BUY/SELL/HOLD mix against the champion's backtest",
            )?,
            regime_psi: gauge(
                registry,
                "tradeserve_drift_regime_psi",
                "PSI of the drift window's mean regime probabilities against the champion's backtest",
            )?,
            decisions,
        })
    }

    fn set_mix(&self, mix: Option<Mix>, source: &str) {
        let shares = [
            ("action", "BUY", mix.map(|m| m.buy)),
            ("action", "SELL", mix.map(|m| m.sell)),
            ("action", "HOLD", mix.map(|m| m.hold)),
            ("regime", "bull", mix.map(|m| m.bull)),
            ("regime", "bear", mix.map(|m| m.bear)),
            ("regime", "sideways", mix.map(|m| m.sideways)),
        ];
        for (kind, name, v) in shares {
            self.share
                .with_label_values(&[kind, name, source])
                .set(v.unwrap_or(f64::NAN));
        }
    }

    /// Show `s`.
    pub fn show(&self, s: &DriftSummary) {
        for (f, v) in &s.feature_psi {
            self.feature_psi
                .with_label_values(&[f.as_str()])
                .set(v.unwrap_or(f64::NAN));
        }
        self.decisions
            .set(i64::try_from(s.samples).unwrap_or(i64::MAX));
        self.action_psi.set(s.action_psi.unwrap_or(f64::NAN));
        self.regime_psi.set(s.regime_psi.unwrap_or(f64::NAN));
        self.set_mix(s.live, "live");
        self.set_mix(s.backtest, "backtest");
        let rates = [("live", s.hit_rate), ("backtest", s.backtest_hit_rate)];
        for (source, v) in rates {
            self.hit_rate
                .with_label_values(&[source])
                .set(v.unwrap_or(f64::NAN));
        }
        self.hit_rate_p_value
            .set(s.hit_rate_p_value.unwrap_or(f64::NAN));
    }
}
