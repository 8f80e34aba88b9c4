//! Training/serving parity: the Rust features equal the Python features on the golden rows
//! written by `training/train.py`, within 1e-9 (measured: 9e-16; the bound leaves room for another libm's last bit).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::Value;
use tradeserve_core::schema::{FEATURES, HIT_RATES};
use tradeserve_features::compute::{features_at, log_returns};
use tradeserve_features::load_bars_csv;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn rust_features_match_python_on_golden_rows() {
    let bars = load_bars_csv(&repo().join("data/bars.csv")).unwrap();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("data/golden/features.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = golden["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        names, FEATURES,
        "feature schema differs between Python and Rust"
    );
    let hit_names: Vec<&str> = golden["hit_rate_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(hit_names, HIT_RATES);

    let rows = golden["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 200);
    let mut worst = 0.0f64;
    for row in rows {
        let symbol = row["symbol"].as_str().unwrap();
        let ts = row["ts"].as_i64().unwrap();
        let b = &bars[symbol];
        let t = b.ts.iter().position(|x| *x == ts).unwrap();
        let got = features_at(b, &log_returns(&b.close), t).unwrap();
        let want_f: Vec<f64> = row["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want_h: Vec<f64> = row["hit_rates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (i, (g, w)) in got.features.iter().zip(&want_f).enumerate() {
            let d = (g - w).abs();
            worst = worst.max(d);
            assert!(
                d <= 1e-9,
                "{symbol} @ {ts}: {} rust {g} python {w}",
                FEATURES[i]
            );
        }
        for (i, (g, w)) in got.hit_rates.iter().zip(&want_h).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12,
                "{symbol} @ {ts}: {} rust {g} python {w}",
                HIT_RATES[i]
            );
        }
    }
    println!("worst absolute feature difference: {worst:e}");
}
