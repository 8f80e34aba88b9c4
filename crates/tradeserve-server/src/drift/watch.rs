//! The drift monitor's background task: every few seconds it follows the champion (its
//! training reference bins the window; a new champion starts a new window), rotates and
//! computes the window ([`DriftMonitor::tick`]), shows the figures as metrics, and — once the
//! window holds enough decisions for a comparison — backtests a champion it has no expected
//! mix for, on a thread at idle priority, so the request path never waits on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tradeserve_core::PipelineConfig;
use tradeserve_core::model_set::ModelSet;
use tradeserve_core::types::Role;

use super::metrics::DriftMetrics;
use super::{DriftMonitor, DriftSummary, expected};
use crate::control::ControlPlane;

/// What the task watches and how it backtests the champion.
pub struct Watch {
    pub monitor: Arc<DriftMonitor>,
    pub control: Arc<ControlPlane>,
    pub metrics: DriftMetrics,
    /// `features.bars`, its last `days` trading days backtested.
    pub bars: PathBuf,
    pub days: u32,
    pub pipeline: PipelineConfig,
    /// `risk.max_position_notional`.
    pub capital_per_symbol: f64,
}

/// Backtests in flight and those that failed (not retried for the same champion).
#[derive(Default)]
struct Backtests {
    running: Arc<AtomicBool>,
    failed: Mutex<Option<BTreeMap<Role, String>>>,
}

fn versions(set: &ModelSet) -> BTreeMap<Role, String> {
    set.models()
        .iter()
        .map(|m| (m.info.role, m.info.version.clone()))
        .collect()
}

/// Run until aborted (at shutdown).
pub async fn run(w: Watch) {
    let w = Arc::new(w);
    let backtests = Arc::new(Backtests::default());
    let mut ticker = tokio::time::interval(w.monitor.tick_every());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let champion = w.control.champion();
        let reference = champion
            .as_ref()
            .and_then(|c| c.regime_detector.drift_reference.clone());
        w.monitor.use_reference(reference.as_ref());
        let summary = w.monitor.tick();
        w.metrics.show(&summary);
        if let Some(c) = champion {
            expect(&w, &backtests, c, &summary);
        }
    }
}

/// Backtest `champion` for its expected mix, when the window can be compared with it and no
/// backtest of it exists, runs or has failed.
fn expect(w: &Arc<Watch>, b: &Arc<Backtests>, champion: Arc<ModelSet>, s: &DriftSummary) {
    if s.samples < s.min_samples.max(1) {
        return;
    }
    let wanted = versions(&champion);
    let known = w.monitor.expected().is_some_and(|e| e.versions == wanted);
    if known || b.failed.lock().as_ref() == Some(&wanted) || b.running.swap(true, Ordering::SeqCst)
    {
        return;
    }
    let (w, b) = (Arc::clone(w), Arc::clone(b));
    let spawned = std::thread::Builder::new()
        .name("drift-backtest".into())
        .spawn(move || {
            crate::idle::enter("drift-backtest");
            match expected::backtest(
                &champion,
                &w.bars,
                w.days,
                &w.pipeline,
                w.capital_per_symbol,
            ) {
                Ok(e) => {
                    tracing::info!(decisions = e.decisions, buy = e.mix.buy, sell = e.mix.sell, hold = e.mix.hold, "drift: the champion's backtest mix is the expected one");
                    w.monitor.set_expected(Some(e));
                }
                Err(e) => {
                    tracing::warn!(error = %e, bars = %w.bars.display(), "drift: cannot backtest the champion; its action and regime mix are not compared");
                    w.monitor.set_expected(None);
                    *b.failed.lock() = Some(wanted);
                }
            }
            b.running.store(false, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "drift: cannot start the backtest thread");
    }
}
