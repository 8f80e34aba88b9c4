//! The backtest on the bundled models over part of the bundled history: deterministic, every
//! bar decided once, the book marked once per bar time, and its equity the sum of what its
//! orders made.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tradeserve_backtest::engine::{Settings, run};
use tradeserve_backtest::history::until;
use tradeserve_backtest::report::Report;
use tradeserve_core::PipelineConfig;
use tradeserve_features::{SymbolBars, load_bars_csv};
use tradeserve_models::{BundledModels, VersionSelection};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first `n` bars of three symbols (a debug build decides a few thousand a second).
fn history(n: usize) -> BTreeMap<String, SymbolBars> {
    let mut all = load_bars_csv(&repo().join("data/bars.csv")).unwrap();
    all.retain(|s, _| ["AAPL", "MSFT", "NVDA"].contains(&s.as_str()));
    // Every symbol has a bar each minute: the first n end at the same time.
    let last = all["AAPL"].ts[n - 1];
    until(all, last)
}

#[test]
fn a_run_is_deterministic_and_its_book_adds_up() {
    let models = Arc::new(
        BundledModels::new(repo().join("models"))
            .load_set(&VersionSelection::all("1"))
            .unwrap(),
    );
    let bars = history(400);
    let capital = 1_000_000.0;
    let settings = Settings {
        capital,
        from: None,
    };
    let mut calls = Vec::new();
    let a = run(
        &bars,
        Arc::clone(&models),
        PipelineConfig::default(),
        &settings,
        &mut |done, total| calls.push((done, total)),
    )
    .unwrap();
    // Progress every 4,096 steps and at the end (1,020 steps: the end only).
    assert_eq!(calls, vec![(1020, 1020)]);
    let b = run(
        &bars,
        models,
        PipelineConfig::default(),
        &settings,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(a.orders, b.orders);
    assert_eq!(a.decided, b.decided);
    assert_eq!(a.book.curve(), b.book.curve());
    // Its report serializes to the same bytes twice.
    let minute = 252.0 * 390.0;
    let json = |r| serde_json::to_string(&Report::of(r, minute)).unwrap();
    assert_eq!(json(&a), json(&b));
    let report = Report::of(&a, minute);
    assert_eq!(report.overall.orders, a.orders.len() as u64);

    // Every bar with features (400 − 60 warm-up, three symbols) decided or refused once.
    let failed: u64 = a.failed.values().sum();
    assert_eq!(a.decisions + failed, 3 * 340, "{:?}", a.failed);
    assert!(
        a.decisions > 0 && !a.orders.is_empty(),
        "{} orders",
        a.orders.len()
    );
    // One mark per bar time.
    assert_eq!(a.book.curve().times.len(), 340);

    // The final equity is the capital plus every position marked at the last close.
    let last: BTreeMap<&str, f64> = bars
        .iter()
        .map(|(s, b)| (s.as_str(), *b.close.last().unwrap()))
        .collect();
    let pnl: f64 = a
        .orders
        .iter()
        .map(|o| o.shares as f64 * (last[o.symbol.as_str()] - o.price))
        .sum();
    let equity = *a.book.curve().equity.last().unwrap();
    assert!(
        (equity - (capital + pnl)).abs() < 1e-6,
        "{equity} vs {}",
        capital + pnl
    );
}
