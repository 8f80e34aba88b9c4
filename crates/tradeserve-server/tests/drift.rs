//! Drift monitoring on the binary, watched by a real Prometheus with the shipped alert rules
//! (`for:` shortened to 1 s): two live-fed replicas get the bundled bars of the last five
//! training days of every symbol, one as they are and one with every return and bar range
//! made four times larger. Both decide at each bar. The shifted replica's feature PSI rises far
//! above 0.25 and `TradeServeFeatureDriftMajor` fires for it; the calm one stays below 0.1 and no
//! drift alert fires for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tradeserve_testkit::{PrometheusServer, ServiceProcess};

mod load_common;
use load_common::{Api, serial};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

/// Bars 1,500–3,509 of each symbol (days 4–8 of the nine training days, with look-back).
const FIRST: usize = 1500;
const LAST: usize = 3510;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    )
    .unwrap()
}

/// The shipped rules with every `for:` shortened to 1 s.
fn quick_rules() -> String {
    tradeserve_testkit::quick_rules(&repo_file("deploy/prometheus/alerts.yml"))
}

/// Every symbol's bars as a feed sends them; `scale` multiplies each log return and each
/// bar's range (1: as they are).
fn bars(scale: f64) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/bars.csv");
    let all = tradeserve_features::load_bars_csv(&path).unwrap();
    let mut out = Vec::new();
    for (symbol, b) in &all {
        let base = b.close[FIRST];
        for i in FIRST..LAST {
            let close = base * (scale * (b.close[i] / base).ln()).exp();
            let high = close * (1.0 + scale * (b.high[i] / b.close[i] - 1.0));
            let low = close * (1.0 - scale * (1.0 - b.low[i] / b.close[i]));
            let end = OffsetDateTime::from_unix_timestamp(b.ts[i])
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            out.push(
                json!({"symbol": symbol, "end": end, "open": close, "high": high,
                "low": low, "close": close, "volume": b.volume[i]}),
            );
        }
    }
    out
}

/// A live-fed replica with a 12 s drift window.
fn replica(dir: &Path, name: &str) -> ServiceProcess {
    let file = |f: &str| dir.join(format!("{name}-{f}")).display().to_string();
    ServiceProcess::start(
        BIN,
        &[
            ("TRADESERVE_FEATURES__SOURCE", "live".into()),
            ("TRADESERVE_EVENTS__AUDIT_LOG", file("audit.jsonl")),
            ("TRADESERVE_CONTROL__FILE", file("control.json")),
            ("TRADESERVE_DRIFT__WINDOW", "12s".into()),
            ("TRADESERVE_DRIFT__MIN_SAMPLES", "300".into()),
        ],
    )
}

/// Post `bars` in batches; returns the (symbol, end) of each, in order.
fn feed(api: &Api, bars: &[Value]) -> Vec<(String, String)> {
    for chunk in bars.chunks(1000) {
        let (s, v) = api.call("POST", "/api/v1/bars", json!({ "bars": chunk }));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["appended"], chunk.len(), "{v}");
    }
    bars.iter()
        .map(|b| {
            (
                b["symbol"].as_str().unwrap().to_owned(),
                b["end"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Decide at every 7th bar past the look-back (about 6,800 inputs over 24 symbols).
fn decide(api: &Api, at: &[(String, String)]) {
    for (i, (symbol, end)) in at.iter().enumerate() {
        if i % (LAST - FIRST) < 60 || i % 7 != 0 {
            continue;
        }
        let body = json!({"symbol": symbol, "timestamp": end, "risk_check": false});
        let (s, v) = api.call("POST", "/api/v1/predict", body);
        assert_eq!(s, 200, "{v}");
    }
}

fn firing(api: &Api, prom: &str) -> Vec<Value> {
    let alerts: Value = api
        .rt
        .block_on(async {
            api.client
                .get(format!("{prom}/api/v1/alerts"))
                .send()
                .await?
                .json::<Value>()
                .await
        })
        .unwrap();
    alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .cloned()
        .collect()
}

fn max_psi(api: &Api) -> f64 {
    let (s, stats) = api.call("GET", "/api/v1/stats", Value::Null);
    assert_eq!(s, 200);
    stats["drift"]["max_feature_psi"]
        .as_f64()
        .unwrap_or_else(|| panic!("no PSI yet: {}", stats["drift"]))
}

#[test]
#[ignore = "needs prometheus (scripts/test.sh installs it)"]
fn shifted_bars_fire_the_drift_alert_and_calm_ones_keep_it_quiet() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (calm, shifted) = (replica(dir.path(), "calm"), replica(dir.path(), "shifted"));
    let target = |s: &ServiceProcess| s.url().trim_start_matches("http://").to_owned();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n\
         scrape_configs:\n  - job_name: tradeserve\n    static_configs:\n      - targets: [\"{}\", \"{}\"]\n",
        target(&calm),
        target(&shifted)
    );
    let prom = PrometheusServer::start(&config, &[("alerts.yml", &quick_rules())]);
    let (calm_api, shifted_api) = (Api::new(&calm.url()), Api::new(&shifted.url()));
    let calm_at = feed(&calm_api, &bars(1.0));
    let shifted_at = feed(&shifted_api, &bars(4.0));

    // Decide until the shifted replica's alert fires (the 12 s window needs fresh inputs: each
    // round decides every sampled bar again, counted once per symbol and bar per window).
    // A bounded number of rounds (each decides every sampled bar of both replicas), not a
    // clock: a run that never fires fails after them.
    const ROUNDS: usize = 100;
    let fired = (0..ROUNDS)
        .find_map(|_| {
            decide(&calm_api, &calm_at);
            decide(&shifted_api, &shifted_at);
            let fired: Vec<Value> = firing(&calm_api, &prom.url())
                .into_iter()
                .filter(|a| a["labels"]["alertname"] == "TradeServeFeatureDriftMajor")
                .collect();
            if fired.is_empty() {
                std::thread::sleep(Duration::from_millis(200));
                return None;
            }
            Some(fired)
        })
        .unwrap_or_else(|| panic!("no drift alert fired in {ROUNDS} rounds"));
    let shifted_target = target(&shifted);
    assert!(
        fired
            .iter()
            .all(|a| a["labels"]["instance"] == shifted_target.as_str()),
        "{fired:?}"
    );
    let psi = max_psi(&shifted_api);
    assert!(psi > 0.25, "shifted: {psi}");
    let calm_psi = max_psi(&calm_api);
    assert!(calm_psi < 0.1, "calm: {calm_psi}");
    // No drift alert of any kind for the calm replica.
    let calm_target = target(&calm);
    let loud: Vec<Value> = firing(&calm_api, &prom.url())
        .into_iter()
        .filter(|a| a["labels"]["instance"] == calm_target.as_str())
        .filter(|a| {
            a["labels"]["alertname"]
                .as_str()
                .unwrap()
                .starts_with("TradeServeFeatureDrift")
        })
        .collect();
    assert!(loud.is_empty(), "{loud:?}");
    // The metrics say the same, per feature.
    let metrics = shifted_api.text("/metrics");
    let vol = metrics
        .lines()
        .find(|l| l.starts_with("tradeserve_drift_feature_psi{feature=\"vol_15\"}"))
        .unwrap();
    let v: f64 = vol.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(v > 0.25, "{vol}");
}
