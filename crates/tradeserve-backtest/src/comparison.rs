//! The backtest's document: one or more model sets run over the same history, side by side —
//! what the history was, the annualisation the statistics assume, and for each set its models
//! (role, version, digest), its [`Report`] and its equity and drawdown curves. This is the
//! backtest's JSON, and what the table ([`crate::table`]) and the HTML report
//! ([`crate::html`]) are drawn from. No wall-clock field, so equal inputs give equal bytes.

use std::collections::BTreeMap;

use serde::Serialize;
use std::sync::Arc;

use tradeserve_core::{ModelSet, PipelineConfig};
use tradeserve_features::SymbolBars;

use crate::engine::{BacktestError, Run, Settings, run};
use crate::history::History;
use crate::report::Report;

/// The periods a year the annual figures assume, and what a period is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annualization {
    pub periods_per_year: f64,
    pub period: String,
}

/// One model of a set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRef {
    pub role: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// The book's curves: equity and drawdown (≤ 0, from the running peak) at each step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curves {
    pub times: Vec<i64>,
    pub equity: Vec<f64>,
    pub drawdown: Vec<f64>,
}

impl Curves {
    /// Of `run`'s book, the starting capital counting as the first peak.
    pub fn of(run: &Run, capital: f64) -> Curves {
        let curve = run.book.curve();
        Curves {
            times: curve.times.clone(),
            equity: curve.equity.clone(),
            drawdown: drawdowns(capital, &curve.equity),
        }
    }
}

/// The fall of each point of `equity` from its running peak (`capital` the first peak).
fn drawdowns(capital: f64, equity: &[f64]) -> Vec<f64> {
    let mut peak = capital;
    equity
        .iter()
        .map(|e| {
            peak = peak.max(*e);
            e / peak - 1.0
        })
        .collect()
}

/// One model set's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetResult {
    /// What the person running it called the set.
    pub name: String,
    pub models: Vec<ModelRef>,
    pub report: Report,
    pub curves: Curves,
}

impl SetResult {
    /// The result of `run` for the set `name` of `models`.
    pub fn of(
        name: &str,
        models: &ModelSet,
        run: &Run,
        capital: f64,
        annualization: f64,
    ) -> SetResult {
        SetResult {
            name: name.to_owned(),
            models: models
                .models()
                .iter()
                .map(|m| ModelRef {
                    role: m.info.role.as_str().to_owned(),
                    name: m.info.name.clone(),
                    version: m.info.version.clone(),
                    sha256: m.info.sha256.clone(),
                })
                .collect(),
            report: Report::of(run, annualization),
            curves: Curves::of(run, capital),
        }
    }
}

/// Every set over one history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub history: History,
    pub capital: f64,
    pub annualization: Annualization,
    pub sets: Vec<SetResult>,
}

/// How every set of a comparison is run: the service's pipeline settings, the book and the
/// part of the history decided, and the annualisation of the statistics.
#[derive(Debug, Clone)]
pub struct Plan {
    pub config: PipelineConfig,
    pub settings: Settings,
    pub annualization: Annualization,
}

/// Run each named set over `bars` as `plan` says, and put the results side by side (with each
/// set's run, in the same order). `progress(set, done, total)` reports each run's progress.
pub fn compare(
    bars: &BTreeMap<String, SymbolBars>,
    sets: &[(String, Arc<ModelSet>)],
    plan: Plan,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(Comparison, Vec<Run>), BacktestError> {
    let Plan {
        config,
        settings,
        annualization,
    } = plan;
    let mut results = Vec::with_capacity(sets.len());
    let mut runs = Vec::with_capacity(sets.len());
    for (name, models) in sets {
        let ran = run(
            bars,
            Arc::clone(models),
            config.clone(),
            &settings,
            &mut |done, total| progress(name, done, total),
        )?;
        results.push(SetResult::of(
            name,
            models,
            &ran,
            settings.capital,
            annualization.periods_per_year,
        ));
        runs.push(ran);
    }
    let comparison = Comparison {
        history: History::of(bars, settings.from),
        capital: settings.capital,
        annualization,
        sets: results,
    };
    Ok((comparison, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_is_the_fall_from_the_running_peak_capital_included() {
        let dd = drawdowns(100.0, &[90.0, 120.0, 96.0, 130.0]);
        assert_eq!(dd, vec![90.0 / 100.0 - 1.0, 0.0, 96.0 / 120.0 - 1.0, 0.0]);
        assert!(drawdowns(1.0, &[]).is_empty());
    }
}
