//! The statistics against `empyrical-reloaded` (pinned in the test harness's Python venv) on
//! the same return series (synthetic ones, and the book's returns of a bundled backtest): every figure within 1e-9 (relative, for figures above 1 in
//! magnitude, such as a Sharpe ratio annualised over minutes), undefined ones undefined in both (NaN or
//! infinity there, absent here).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tradeserve_backtest::stats::Stats;

/// Deterministic returns: a linear congruential generator, scaled to ±`scale`, with a `drift`.
fn series(seed: u64, n: usize, scale: f64, drift: f64) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            drift + scale * (2.0 * u - 1.0)
        })
        .collect()
}

/// The book's per-bar returns of a backtest: the bundled v1 models over the first 400 bars of
/// three bundled symbols.
fn backtest_returns() -> Vec<f64> {
    use std::sync::Arc;
    use tradeserve_backtest::engine::{Settings, run};
    use tradeserve_backtest::history::until;
    use tradeserve_models::{BundledModels, VersionSelection};
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut bars = tradeserve_features::load_bars_csv(&repo.join("data/bars.csv")).unwrap();
    bars.retain(|s, _| ["AAPL", "MSFT", "NVDA"].contains(&s.as_str()));
    let last = bars["AAPL"].ts[399];
    let bars = until(bars, last);
    let models = BundledModels::new(repo.join("models"))
        .load_set(&VersionSelection::all("1"))
        .unwrap();
    let settings = Settings {
        capital: 6_000_000.0,
        from: None,
    };
    let ran = run(
        &bars,
        Arc::new(models),
        tradeserve_core::PipelineConfig::default(),
        &settings,
        &mut |_, _| {},
    )
    .unwrap();
    let returns = ran.book.returns();
    let moving = returns.iter().filter(|r| **r != 0.0).count();
    assert!(moving > 100, "{moving} of {} returns move", returns.len());
    returns
}

const SCRIPT: &str = r#"
import json, sys
import numpy as np
import empyrical as ep
out = []
for case in json.load(sys.stdin):
    r = np.asarray(case["returns"], dtype=float)
    a = case["annualization"]
    f = lambda x: None if x is None or not np.isfinite(x) else float(x)
    out.append({
        "total_return": f(ep.cum_returns_final(r)) if len(r) else None,
        "annual_return": f(ep.annual_return(r, annualization=a)),
        "sharpe": f(ep.sharpe_ratio(r, annualization=a)),
        "sortino": f(ep.sortino_ratio(r, annualization=a)),
        "max_drawdown": f(ep.max_drawdown(r)),
        "calmar": f(ep.calmar_ratio(r, annualization=a)),
    })
json.dump(out, sys.stdout)
"#;

#[test]
#[ignore = "needs the test harness's Python venv with empyrical-reloaded (scripts/test.sh)"]
fn the_statistics_agree_with_empyrical_reloaded() {
    // Bars of a minute: 390 a session, 252 sessions a year.
    let minute = 252.0 * 390.0;
    let cases: Vec<(Vec<f64>, f64)> = vec![
        (series(1, 4_680, 0.002, 0.0), minute),
        (series(2, 4_680, 0.002, 0.0002), minute),
        (series(3, 500, 0.03, -0.001), 252.0),
        (series(4, 60, 0.05, 0.01), 12.0),
        (vec![0.01, 0.02, 0.005], 252.0),
        (vec![0.01, 0.01, 0.01], 252.0),
        (vec![-0.01], 252.0),
        (vec![0.1, -0.2, 0.1, 0.0, 0.0], 252.0),
        // The returns an actual backtest's book produced.
        (backtest_returns(), minute),
    ];
    let input: Vec<Value> = cases
        .iter()
        .map(|(r, a)| json!({"returns": r, "annualization": a}))
        .collect();
    let mut child = Command::new(tradeserve_testkit::python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "empyrical script failed");
    let theirs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    for ((returns, a), them) in cases.iter().zip(&theirs) {
        let ours = serde_json::to_value(Stats::of(returns, *a)).unwrap();
        for field in [
            "total_return",
            "annual_return",
            "sharpe",
            "sortino",
            "max_drawdown",
            "calmar",
        ] {
            let (o, t) = (ours[field].as_f64(), them[field].as_f64());
            match (o, t) {
                (Some(o), Some(t)) => assert!(
                    (o - t).abs() <= 1e-9 * t.abs().max(1.0),
                    "{field} over {} returns: ours {o}, empyrical {t}",
                    returns.len()
                ),
                (None, None) => {}
                _ => panic!("{field} over {returns:?}: ours {o:?}, empyrical {t:?}"),
            }
        }
    }
}
