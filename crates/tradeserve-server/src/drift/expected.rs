//! What the champion is expected to decide: its action mix and mean regime probabilities in a
//! backtest over the last `drift.backtest_days` trading days of `features.bars` (the service's
//! own pipeline, in process, `tradeserve_backtest`). Blocking: run on a blocking thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tradeserve_backtest::comparison::{Annualization, Plan, compare};
use tradeserve_backtest::engine::{BacktestError, Settings};
use tradeserve_backtest::history::last_days_from;
use tradeserve_core::PipelineConfig;
use tradeserve_core::model_set::ModelSet;
use tradeserve_core::types::Role;
use tradeserve_features::load_bars_csv;

use super::Mix;

/// The champion's backtest mix, and which champion it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub versions: BTreeMap<Role, String>,
    pub mix: Mix,
    /// Its orders' hit rate (for the live outcomes' comparison).
    pub hit_rate: Option<f64>,
    pub decisions: u64,
}

/// Why the expected mix could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ExpectedError {
    #[error(transparent)]
    Bars(#[from] tradeserve_features::BarError),
    #[error("{0} holds fewer trading days than drift.backtest_days")]
    TooShort(String),
    #[error(transparent)]
    Run(#[from] BacktestError),
    #[error("the backtest made no decision")]
    Empty,
}

/// Backtest `champion` over the last `days` of `bars` with `config`.
pub fn backtest(
    champion: &ModelSet,
    bars: &Path,
    days: u32,
    config: &PipelineConfig,
    capital_per_symbol: f64,
) -> Result<Expected, ExpectedError> {
    let history = load_bars_csv(bars)?;
    let from = last_days_from(&history, days as usize)
        .ok_or_else(|| ExpectedError::TooShort(bars.display().to_string()))?;
    let local = crate::control::backtest::in_process(champion);
    let plan = Plan {
        config: config.clone(),
        settings: Settings {
            capital: capital_per_symbol * history.len() as f64,
            from: Some(from),
        },
        annualization: Annualization {
            periods_per_year: 252.0 * 390.0,
            period: "one-minute bar".into(),
        },
    };
    let sets = [("champion".to_owned(), Arc::new(local))];
    let (c, _) = compare(&history, &sets, plan, &mut |_, _, _| {})?;
    let report = &c.sets.first().ok_or(ExpectedError::Empty)?.report;
    let m = &report.mix;
    let n = (m.buy + m.sell + m.hold) as f64;
    if n == 0.0 {
        return Err(ExpectedError::Empty);
    }
    Ok(Expected {
        versions: champion
            .models()
            .iter()
            .map(|m| (m.info.role, m.info.version.clone()))
            .collect(),
        mix: Mix {
            buy: m.buy as f64 / n,
            sell: m.sell as f64 / n,
            hold: m.hold as f64 / n,
            bull: m.regime_bull.unwrap_or(0.0),
            bear: m.regime_bear.unwrap_or(0.0),
            sideways: m.regime_sideways.unwrap_or(0.0),
        },
        hit_rate: report.overall.hit_rate,
        decisions: report.decisions,
    })
}
