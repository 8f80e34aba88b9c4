//! `tradeserve backtest` on the binary, as a desk would run it: two model sets over two days of
//! two bundled symbols — the JSON (byte-identical across runs, its figures adding up), the
//! table, the self-contained HTML report — and every decision it made is the one the service
//! answers for the same `timestamp` request (one kernel, no second copy).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tradeserve_testkit::ServiceProcess;

mod load_common;
use load_common::Api;

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

/// Bars held per symbol up to the end of 2025-10-07 (two sessions of 390), less the look-back.
const DECIDED_PER_SYMBOL: u64 = 2 * 390 - 60;

/// Run the backtest writing into `dir` with file names ending `tag`; returns stdout.
fn backtest(dir: &Path, tag: &str) -> String {
    let file = |name: &str| dir.join(format!("{name}{tag}")).display().to_string();
    let out = tradeserve_testkit::run_ok(
        Command::new(BIN).args([
            "backtest",
            "--symbols",
            "AAPL,NVDA",
            "--to",
            "2025-10-07T21:00:00Z",
            "--set",
            "champion",
            "--set",
            "candidate=2",
            "--capital",
            "4000000",
            "--json",
            &file("report.json"),
            "--html",
            &dir.join("new-folder")
                .join(format!("report.html{tag}"))
                .display()
                .to_string(),
            "--decisions",
            &file("decisions.jsonl"),
        ]),
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_backtest_reports_json_table_and_html_and_decides_as_the_service_does() {
    let dir = tempfile::tempdir().unwrap();
    let table = backtest(dir.path(), "");
    backtest(dir.path(), ".again");
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("report.json"), read("report.json.again"));
    // The HTML went into a folder that did not exist yet.
    assert_eq!(
        read("new-folder/report.html"),
        read("new-folder/report.html.again")
    );
    assert_eq!(read("decisions.jsonl"), read("decisions.jsonl.again"));

    let report: Value = serde_json::from_slice(&read("report.json")).unwrap();
    assert_eq!(report["history"]["symbols"], json!(["AAPL", "NVDA"]));
    assert_eq!(report["history"]["bars"], 2 * 780);
    assert_eq!(report["capital"], 4_000_000.0);
    assert_eq!(report["annualization"]["periods_per_year"], 98_280.0);
    let sets = report["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2);
    let decisions = lines(&dir.path().join("decisions.jsonl"));
    for (set, name, version) in [(&sets[0], "champion", "1"), (&sets[1], "candidate", "2")] {
        assert_eq!(set["name"], name);
        let models = set["models"].as_array().unwrap();
        assert_eq!(models.len(), 5);
        assert!(models.iter().all(|m| m["version"] == version), "{models:?}");
        let r = &set["report"];
        assert_eq!(r["decisions"], 2 * DECIDED_PER_SYMBOL, "{name}");
        assert_eq!(r["failed"], json!({}), "{name}");
        let mix = &r["mix"];
        let actions = ["buy", "sell", "hold"].map(|a| mix[a].as_u64().unwrap());
        assert_eq!(actions.iter().sum::<u64>(), 2 * DECIDED_PER_SYMBOL);
        // The decisions file holds exactly these decisions; the orders are its approved BUYs
        // and SELLs with shares.
        let mine: Vec<&Value> = decisions.iter().filter(|d| d["set"] == name).collect();
        assert_eq!(mine.len() as u64, 2 * DECIDED_PER_SYMBOL);
        let orders = mine
            .iter()
            .filter(|d| d["approved"] == true && d["action"] != "HOLD" && d["quantity"] != 0)
            .count();
        assert_eq!(r["overall"]["orders"], orders, "{name}");
        let refused = mine.iter().filter(|d| d["approved"] == false).count();
        assert_eq!(r["rejected"], refused, "{name}");
        // One mark per bar time; the total return is the curve's last point over capital.
        let equity = set["curves"]["equity"].as_array().unwrap();
        assert_eq!(equity.len() as u64, DECIDED_PER_SYMBOL);
        assert_eq!(r["stats"]["periods"], DECIDED_PER_SYMBOL);
        let last = equity.last().unwrap().as_f64().unwrap();
        let total = r["stats"]["total_return"].as_f64().unwrap();
        assert!(
            (total - (last / 4e6 - 1.0)).abs() < 1e-12,
            "{total} vs {last}"
        );
        let drawdown = set["curves"]["drawdown"].as_array().unwrap();
        let worst = drawdown
            .iter()
            .map(|d| d.as_f64().unwrap())
            .fold(0.0, f64::min);
        let max_dd = r["stats"]["max_drawdown"].as_f64().unwrap_or(0.0);
        assert!((worst - max_dd).abs() < 1e-12, "{worst} vs {max_dd}");
    }

    // The table names both sets and the figures a desk reads first.
    for needle in [
        "backtest over 2 symbols, 1560 bars",
        "champion",
        "candidate",
        "hit rate",
        "sharpe",
        "max drawdown",
        "orders per symbol",
        "AAPL",
        "NVDA",
    ] {
        assert!(table.contains(needle), "{needle:?} not in:\n{table}");
    }

    // The page stands alone: two curves on each of its two charts, nothing fetched.
    let html = String::from_utf8(read("new-folder/report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html.matches("<polyline").count(), 4);
    for outside in ["<script", "http://", "https://", "src="] {
        assert!(!html.contains(outside), "{outside}");
    }

    // The service answers every decision of each set the same, as of the same bar (the risk
    // checks aside: its books are its own).
    for (name, versions) in [("champion", "1"), ("candidate", "2")] {
        let file = |f: &str| dir.path().join(format!("{f}-{name}")).display().to_string();
        let mut owned: Vec<(String, String)> = [
            "REGIME_DETECTOR",
            "META_CONTROLLER",
            "BULL_SPECIALIST",
            "BEAR_SPECIALIST",
            "SIDEWAYS_SPECIALIST",
        ]
        .iter()
        .map(|role| {
            (
                format!("TRADESERVE_MODELS__VERSIONS__{role}"),
                versions.to_owned(),
            )
        })
        .collect();
        owned.push(("TRADESERVE_EVENTS__AUDIT_LOG".into(), file("audit")));
        owned.push(("TRADESERVE_CONTROL__FILE".into(), file("control")));
        let envs: Vec<(&str, String)> =
            owned.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let service = ServiceProcess::start(BIN, &envs);
        let api = Api::new(&service.url());
        let mut compared = 0;
        for d in decisions.iter().filter(|d| d["set"] == name) {
            let at = OffsetDateTime::from_unix_timestamp(d["time"].as_i64().unwrap())
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            let body = json!({"symbol": d["symbol"], "timestamp": at, "risk_check": false});
            let (status, answer) = api.call("POST", "/api/v1/predict", body);
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["action"], d["action"], "{name} {d} {answer}");
            assert_eq!(answer["confidence"], d["confidence"], "{name} {d} {answer}");
            assert_eq!(
                answer["recommended_quantity"], d["quantity"],
                "{name} {d} {answer}"
            );
            let p = &answer["regime_probabilities"];
            assert_eq!(
                json!([p["bull"], p["bear"], p["sideways"]]),
                d["regime"],
                "{name} {d}"
            );
            compared += 1;
        }
        assert_eq!(compared, 2 * DECIDED_PER_SYMBOL);
    }
}

/// The number in a model-card cell: `52.39%` → 0.5239, `0.30 bp` → 0.000030, `6394` → 6394.
fn cell(text: &str) -> f64 {
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        return p.parse::<f64>().unwrap() / 100.0;
    }
    if let Some(b) = t.strip_suffix(" bp") {
        return b.parse::<f64>().unwrap() / 1e4;
    }
    t.parse().unwrap()
}

#[test]
fn the_model_card_quotes_the_backtest_of_the_bundled_versions() {
    let card = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/README.md"
    ))
    .unwrap();
    let section = card
        .split("## Backtest of the bundled versions")
        .nth(1)
        .expect("the model card has its backtest section");
    let command = "tradeserve backtest --set v1=1 --set v2=2 --days 3";
    assert!(section.contains(command));
    let out = Command::new(BIN)
        .args(command.split(' ').skip(1))
        .args(["--json", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| figure"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 8, "{rows:?}");
    for row in &rows {
        for (i, set) in report["sets"].as_array().unwrap().iter().enumerate() {
            let r = &set["report"];
            // Each figure as the card rounds it, with room for a decision or two that another
            // CPU's rounding could flip at a threshold.
            let (actual, room) = match row[0] {
                "decisions" => (r["decisions"].as_f64().unwrap(), 0.0),
                "orders" => (r["overall"]["orders"].as_f64().unwrap(), 10.0),
                "hit rate" => (r["overall"]["hit_rate"].as_f64().unwrap(), 0.001),
                "mean return / order" => (r["overall"]["mean_return"].as_f64().unwrap(), 2e-6),
                "total return" => (r["stats"]["total_return"].as_f64().unwrap(), 2e-4),
                "sharpe" => (r["stats"]["sharpe"].as_f64().unwrap(), 0.2),
                "max drawdown" => (r["stats"]["max_drawdown"].as_f64().unwrap(), 2e-4),
                "turnover (× capital)" => (r["turnover"].as_f64().unwrap(), 0.02),
                other => panic!("unexpected row {other}"),
            };
            let quoted = cell(row[i + 1]);
            assert!(
                (actual - quoted).abs() <= room + 1e-12 + quoted.abs() * 1e-9,
                "{}: card {} vs backtest {actual} ({})",
                row[0],
                row[i + 1],
                set["name"]
            );
        }
    }
}

#[test]
#[ignore = "needs the tansu broker (scripts/test.sh installs it)"]
fn a_backtest_of_the_bars_topic_equals_the_backtest_of_the_csv_it_was_published_from() {
    let broker = tradeserve_testkit::TansuBroker::start();
    let brokers = broker.bootstrap();
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/bars.csv");
    tradeserve_testkit::run_ok(Command::new(BIN).args([
        "market",
        "publish",
        "--csv",
        csv,
        "--brokers",
        &brokers,
        "--topic",
        "bars.backtest",
        "--symbols",
        "AAPL,NVDA",
    ]));
    let run = |source: &[&str]| {
        let out = tradeserve_testkit::run_ok(
            Command::new(BIN)
                .args(["backtest", "--set", "champion", "--set", "candidate=2"])
                .args(["--to", "2025-10-08T21:00:00Z", "--days", "1", "--json", "-"])
                .args(source),
        );
        out.stdout
    };
    let from_topic = run(&["--kafka-brokers", &brokers, "--topic", "bars.backtest"]);
    let from_csv = run(&["--bars", csv, "--symbols", "AAPL,NVDA"]);
    let report: Value = serde_json::from_slice(&from_topic).unwrap();
    assert_eq!(report["history"]["symbols"], json!(["AAPL", "NVDA"]));
    assert_eq!(report["history"]["bars"], 2 * 3 * 390);
    assert_eq!(report["sets"][0]["report"]["decisions"], 2 * 390);
    assert!(
        from_topic == from_csv,
        "the topic's backtest differs from the CSV's"
    );
}

#[test]
#[ignore = "needs a real MLflow server (scripts/test.sh installs it)"]
fn sets_from_the_mlflow_registry_backtest_as_the_same_bundled_versions() {
    let mlflow = tradeserve_testkit::MlflowServer::start();
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
    let roles = [
        "regime_detector",
        "meta_controller",
        "bull_specialist",
        "bear_specialist",
        "sideways_specialist",
    ];
    let publish = |role: &str, version: &str, alias: &str| {
        tradeserve_testkit::run_ok(Command::new(BIN).args([
            "models",
            "publish",
            "--dir",
            &format!("{models}/{role}/{version}"),
            "--name",
            &format!("tradeserve.{role}"),
            "--alias",
            alias,
            "--tracking-uri",
            &mlflow.url(),
        ]));
    };
    for role in roles {
        publish(role, "1", "champion");
    }
    publish("bull_specialist", "2", "challenger");
    let cache = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)], sets: &[&str]| {
        let mut c = Command::new(BIN);
        c.args([
            "backtest",
            "--symbols",
            "AAPL",
            "--to",
            "2025-10-07T21:00:00Z",
        ])
        .args(["--json", "-"]);
        for s in sets {
            c.args(["--set", s]);
        }
        c.envs(envs.iter().copied());
        tradeserve_testkit::run_ok(&mut c).stdout
    };
    let cache_dir = cache.path().display().to_string();
    let url = mlflow.url();
    let registry = [
        ("TRADESERVE_MODELS__SOURCE", "mlflow"),
        ("TRADESERVE_MODELS__MLFLOW__TRACKING_URI", url.as_str()),
        ("TRADESERVE_MODELS__MLFLOW__CACHE_DIR", cache_dir.as_str()),
    ];
    let from_registry = run(
        &registry,
        &["champion", "challenger=bull_specialist:@challenger"],
    );
    let bundled = run(&[], &["champion", "challenger=bull_specialist:2"]);
    let report: Value = serde_json::from_slice(&from_registry).unwrap();
    let bull = |set: usize| {
        report["sets"][set]["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "bull_specialist")
            .unwrap()["version"]
            .clone()
    };
    assert_eq!((bull(0), bull(1)), (json!("1"), json!("2")));
    assert!(
        from_registry == bundled,
        "the registry's sets backtest differently"
    );
}
