//! The backtest run: the service's own decision pipeline (`tradeserve_core::Pipeline` — the
//! kernel, sizing and risk checks every request goes through, no second copy) driven over a
//! bar history on a virtual clock. Each bar of each symbol, in time order, is one decision
//! request as of the bar's close (`{"symbol", "timestamp"}`) with `now` at that close, so
//! the risk ledger's days and windows follow the bars; an approved BUY or SELL fills at that
//! close into the [`Book`], which is marked once every symbol's bar at that time is in.
//!
//! Each order's outcome is its next-bar return times its direction — what the service derives
//! as a decision's outcome — so the hit rate and mean return per order here are the ones live
//! trading is compared with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tradeserve_core::event::Event;
use tradeserve_core::ledger::InMemoryRiskLedger;
use tradeserve_core::pipeline::{Answered, Requester};
use tradeserve_core::ports::{EmitError, EventSink, FeatureSource};
use tradeserve_core::{Action, ModelSet, Outcome, Pipeline, PipelineConfig, Routing};
use tradeserve_features::compute::WARMUP;
use tradeserve_features::{MarketReplay, ReplayClock, SymbolBars};

use crate::portfolio::Book;

/// An order the backtest filled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    pub symbol: String,
    /// The bar's close, Unix seconds.
    pub time: i64,
    /// Signed: bought (> 0) or sold (< 0).
    pub shares: i64,
    pub price: f64,
    /// The next bar's return times the order's direction (`None` at the last bar).
    pub outcome: Option<f64>,
}

/// One decision the backtest made (approved or refused by risk), as the service would have
/// answered it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decided {
    pub symbol: String,
    /// The bar's close, Unix seconds.
    pub time: i64,
    pub action: Action,
    pub confidence: f64,
    pub quantity: u64,
    /// Passed the risk checks.
    pub approved: bool,
    /// The regime detector's probabilities: bull, bear, sideways.
    pub regime: [f64; 3],
}

/// What a run is over and from what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// The book's starting cash.
    pub capital: f64,
    /// Decide only bars closing at or after this (Unix seconds); earlier bars are history the
    /// features look back on.
    pub from: Option<i64>,
}

/// What one model set did over the history.
#[derive(Debug, Clone)]
pub struct Run {
    /// Decisions made (approved or refused by risk).
    pub decisions: u64,
    /// Decisions the risk checks refused.
    pub rejected: u64,
    /// Requests that got no decision (a bar without features), by reason.
    pub failed: BTreeMap<String, u64>,
    pub orders: Vec<Order>,
    /// Every decision, in the order made.
    pub decided: Vec<Decided>,
    pub book: Book,
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("the history has no bar with features (each symbol needs more than {WARMUP} bars)")]
    NoHistory,
    #[error("cannot start the backtest's runtime: {0}")]
    Runtime(std::io::Error),
}

/// Decision events are not kept: the backtest reports what they decided.
struct Discard;

impl EventSink for Discard {
    fn emit(&self, _event: Event) -> Result<(), EmitError> {
        Ok(())
    }
}

/// One step of the virtual clock: a bar of a symbol.
struct Step<'a> {
    time: i64,
    symbol: &'a str,
    bar: usize,
}

/// Every bar with features from `from` on, in time order (symbols in name order within a
/// time).
fn steps(bars: &BTreeMap<String, SymbolBars>, from: Option<i64>) -> Vec<Step<'_>> {
    let from = from.unwrap_or(i64::MIN);
    let mut steps: Vec<Step<'_>> = bars
        .iter()
        .flat_map(|(symbol, b)| {
            (WARMUP..b.ts.len())
                .filter(move |bar| b.ts[*bar] >= from)
                .map(move |bar| Step {
                    time: b.ts[bar],
                    symbol: symbol.as_str(),
                    bar,
                })
        })
        .collect();
    steps.sort_by(|a, b| (a.time, a.symbol).cmp(&(b.time, b.symbol)));
    steps
}

/// How often a run reports its progress, in steps.
const PROGRESS_EVERY: usize = 4096;

/// Run `models` over `bars` with the service's `config` (its risk limits and sizing), as
/// `settings` say. `progress(done, total)` is called every few thousand steps and at the end.
pub fn run(
    bars: &BTreeMap<String, SymbolBars>,
    models: Arc<ModelSet>,
    mut config: PipelineConfig,
    settings: &Settings,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Run, BacktestError> {
    let steps = steps(bars, settings.from);
    if steps.is_empty() {
        return Err(BacktestError::NoHistory);
    }
    // The virtual clock does not wait: no decision is late.
    config.deadline = Duration::from_secs(3600);
    let features: Arc<dyn FeatureSource> =
        Arc::new(MarketReplay::from_bars(bars, ReplayClock::Fixed(0)));
    let pipeline = Pipeline::new(
        features,
        Arc::new(InMemoryRiskLedger::new()),
        Arc::new(Discard),
        config,
    );
    let routing = Routing::champion(models);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BacktestError::Runtime)?;
    let mut run = Run {
        decisions: 0,
        rejected: 0,
        failed: BTreeMap::new(),
        orders: Vec::new(),
        decided: Vec::with_capacity(steps.len()),
        book: Book::new(settings.capital),
    };
    runtime.block_on(async {
        for (i, step) in steps.iter().enumerate() {
            decide(&pipeline, &routing, step, bars, &mut run).await;
            if steps.get(i + 1).is_none_or(|next| next.time != step.time) {
                run.book.mark(step.time);
            }
            if (i + 1) % PROGRESS_EVERY == 0 {
                progress(i + 1, steps.len());
            }
        }
    });
    progress(steps.len(), steps.len());
    Ok(run)
}

/// The shares an approved decision trades, signed (`None`: nothing to trade).
fn signed_shares(decision: &tradeserve_core::Decision) -> Option<i64> {
    let direction = match decision.action {
        Action::Buy => 1,
        Action::Sell => -1,
        Action::Hold => return None,
    };
    let quantity = i64::try_from(decision.recommended_quantity).ok()?;
    (quantity > 0).then_some(direction * quantity)
}

/// One bar's decision, its fill, and the symbol's price for the mark.
async fn decide(
    pipeline: &Pipeline,
    routing: &Routing,
    step: &Step<'_>,
    bars: &BTreeMap<String, SymbolBars>,
    run: &mut Run,
) {
    let Some(b) = bars.get(step.symbol) else {
        return;
    };
    let price = b.close[step.bar];
    run.book.price(step.symbol, price);
    let Ok(now) = OffsetDateTime::from_unix_timestamp(step.time) else {
        *run.failed.entry("bad timestamp".into()).or_default() += 1;
        return;
    };
    let at = now.format(&Rfc3339).unwrap_or_default();
    let body = serde_json::json!({"symbol": step.symbol, "timestamp": at}).to_string();
    let answered = pipeline
        .decide(
            routing,
            body.as_bytes(),
            Instant::now(),
            now,
            Requester::default(),
        )
        .await;
    let (decision, approved) = match answered {
        Ok(Answered::Fresh(p)) => match p.outcome {
            Outcome::Approved(d) => (d, true),
            Outcome::Rejected(d) => (d, false),
        },
        Ok(Answered::Repeat(_)) => return,
        Err(failed) => {
            *run.failed.entry(failed.error.to_string()).or_default() += 1;
            return;
        }
    };
    run.record(step, &decision, approved);
    if approved {
        run.fill(step, b, &decision);
    }
}

impl Run {
    /// Count and keep one decision.
    fn record(&mut self, step: &Step<'_>, decision: &tradeserve_core::Decision, approved: bool) {
        self.decisions += 1;
        self.rejected += u64::from(!approved);
        let p = &decision.regime_probabilities;
        self.decided.push(Decided {
            symbol: step.symbol.to_owned(),
            time: step.time,
            action: decision.action,
            confidence: decision.confidence,
            quantity: decision.recommended_quantity,
            approved,
            regime: [p.bull, p.bear, p.sideways],
        });
    }

    /// Fill an approved decision at the bar's close, its outcome the next bar's return.
    fn fill(&mut self, step: &Step<'_>, b: &SymbolBars, decision: &tradeserve_core::Decision) {
        let Some(shares) = signed_shares(decision) else {
            return;
        };
        let price = b.close[step.bar];
        let direction = shares.signum();
        self.book.fill(step.symbol, shares as f64, price);
        let outcome = b
            .close
            .get(step.bar + 1)
            .map(|next| (next / price - 1.0) * direction as f64);
        self.orders.push(Order {
            symbol: step.symbol.to_owned(),
            time: step.time,
            shares,
            price,
            outcome,
        });
    }
}
