//! The backtest behind a rollout's `backtest` stage: the champion and the candidate run over
//! the last `days` trading days of the service's bar history (`features.bars`) by the same
//! pipeline settings the service decides with (`tradeserve_backtest`), both in process (a
//! remote backend serves the same bytes, checked with the same golden vectors), and their
//! figures side by side for the gate ([`tradeserve_core::backtest_gate`]). Blocking: run it on
//! a blocking thread.

use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;
use tradeserve_backtest::comparison::{Annualization, Plan, SetResult, compare};
use tradeserve_backtest::engine::BacktestError;
use tradeserve_backtest::engine::Settings;
use tradeserve_backtest::history::last_days_from;
use tradeserve_core::PipelineConfig;
use tradeserve_core::backtest_gate::{BacktestFigures, BacktestGate, BacktestSummary};
use tradeserve_core::model_set::{LoadedModel, ModelSet};
use tradeserve_core::types::Specialist;
use tradeserve_features::load_bars_csv;

/// One-minute bars: 252 trading days of 390 minutes.
const MINUTE_BARS_A_YEAR: f64 = 252.0 * 390.0;

/// Why the backtest stage could not run.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Bars(#[from] tradeserve_features::BarError),
    #[error("{} holds fewer than {days} trading days", path.display())]
    TooShort { path: PathBuf, days: u32 },
    #[error(transparent)]
    Run(#[from] BacktestError),
    #[error("the backtest did not run both sets")]
    Incomplete,
}

/// What the backtest stage runs over: the bar history and the service's pipeline settings.
pub struct OfflineGate {
    pub bars: PathBuf,
    pub config: PipelineConfig,
    /// `risk.max_position_notional`: the book's capital is this times the symbols.
    pub max_position_notional: f64,
}

/// `set` with every model evaluated in process.
pub(crate) fn in_process(set: &ModelSet) -> ModelSet {
    let local = |m: &LoadedModel| LoadedModel {
        remote: None,
        ..m.clone()
    };
    ModelSet::new(
        local(&set.regime_detector),
        local(&set.meta_controller),
        [
            local(set.specialist(Specialist::Bull)),
            local(set.specialist(Specialist::Bear)),
            local(set.specialist(Specialist::Sideways)),
        ],
    )
}

fn figures(s: &SetResult) -> BacktestFigures {
    let r = &s.report;
    BacktestFigures {
        decisions: r.decisions,
        orders: r.overall.orders,
        hit_rate: r.overall.hit_rate,
        mean_return: r.overall.mean_return,
        total_return: r.stats.total_return,
        sharpe: r.stats.sharpe,
        sortino: r.stats.sortino,
        max_drawdown: r.stats.max_drawdown,
        calmar: r.stats.calmar,
        turnover: r.turnover,
    }
}

fn at(t: Option<i64>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t?).ok()
}

impl OfflineGate {
    /// Backtest `candidate` against `champion` as `gate` says.
    pub fn run(
        &self,
        champion: &ModelSet,
        candidate: &ModelSet,
        gate: &BacktestGate,
    ) -> Result<BacktestSummary, OfflineError> {
        let bars = load_bars_csv(&self.bars)?;
        let days = usize::try_from(gate.days).unwrap_or(usize::MAX);
        let from = last_days_from(&bars, days).ok_or_else(|| OfflineError::TooShort {
            path: self.bars.clone(),
            days: gate.days,
        })?;
        let sets = [
            ("champion".to_owned(), Arc::new(in_process(champion))),
            ("candidate".to_owned(), Arc::new(in_process(candidate))),
        ];
        let settings = Settings {
            capital: self.max_position_notional * bars.len() as f64,
            from: Some(from),
        };
        let annualization = Annualization {
            periods_per_year: MINUTE_BARS_A_YEAR,
            period: "one-minute bar: 252 trading days × 390".into(),
        };
        let plan = Plan {
            config: self.config.clone(),
            settings,
            annualization,
        };
        let (c, _) = compare(&bars, &sets, plan, &mut |_, _, _| {})?;
        let [champ, cand] = c.sets.as_slice() else {
            return Err(OfflineError::Incomplete);
        };
        Ok(BacktestSummary {
            from: at(c.history.decided_from),
            to: at(c.history.last_bar),
            symbols: c.history.symbols.len(),
            periods_per_year: MINUTE_BARS_A_YEAR,
            champion: figures(champ),
            candidate: figures(cand),
        })
    }
}
