//! The monitoring the deploy files promise, against the real things: a real Prometheus (Debian's
//! `prometheus`) scraping the real binary under load, with events going to a real Kafka-protocol
//! broker (tansu).
//!
//! - Every query of every panel of `deploy/grafana/tradeserve.json` parses and returns data,
//!   and names only metrics the service exports.
//! - Every metric the alert rules (`deploy/prometheus/alerts.yml`) name is exported.
//! - The rules load, stay quiet while healthy, and an injected fault (the broker stopped under
//!   load) fires its alert, with `for:` shortened to 1 s by this test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tradeserve_testkit::{HANG, PrometheusServer, ServiceProcess, TansuBroker};

mod load_common;
use load_common::{Api, assert_no_failures, serial, stop_load};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

fn repo_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The rules with every `for:` shortened to 1 s (the test cannot wait minutes).
fn quick_rules() -> String {
    tradeserve_testkit::quick_rules(&repo_file("deploy/prometheus/alerts.yml"))
}

fn prometheus_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n\
         scrape_configs:\n  - job_name: tradeserve\n    static_configs:\n      - targets: [\"{target}\"]\n"
    )
}

/// Every metric family the service exports (histograms with their `_bucket`, `_sum`, `_count`).
fn exported(api: &Api) -> BTreeSet<String> {
    let text = api.text("/metrics");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// `tradeserve_…` metric names in a PromQL expression.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tradeserve_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

fn query(api: &Api, prom: &str, expr: &str) -> Value {
    api.rt
        .block_on(async {
            api.client
                .get(format!("{prom}/api/v1/query"))
                .query(&[("query", expr)])
                .send()
                .await?
                .json::<Value>()
                .await
        })
        .unwrap()
}

fn get(api: &Api, url: &str) -> Value {
    api.rt
        .block_on(async { api.client.get(url).send().await?.json::<Value>().await })
        .unwrap()
}

/// The Grafana panels' queries, with the dashboard's variables as Grafana would fill them for
/// "all replicas" at a 1 s scrape interval.
fn panel_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(&repo_file("deploy/grafana/tradeserve.json")).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "15s")
                .replace("$instance", ".*");
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    out
}

/// Metrics exported only in a mode this test does not run: the MLflow registry's.
const MODE_ONLY: &[&str] = &["tradeserve_model_registry_up"];

#[test]
#[ignore = "needs prometheus and the tansu broker (scripts/test.sh installs them)"]
fn grafana_queries_and_alert_rules_hold_against_a_real_prometheus() {
    let _serial = serial();
    let mut broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).display().to_string();
    let server = ServiceProcess::start(
        BIN,
        &[
            ("TRADESERVE_EVENTS__SINK", "both".to_owned()),
            ("TRADESERVE_EVENTS__KAFKA__BROKERS", broker.bootstrap()),
            ("TRADESERVE_EVENTS__KAFKA__SPOOL_DIR", path("spool")),
            ("TRADESERVE_EVENTS__AUDIT_LOG", path("audit.jsonl")),
            ("TRADESERVE_CONTROL__FILE", path("control.json")),
        ],
    );
    let target = server.url().trim_start_matches("http://").to_owned();
    let prom = PrometheusServer::start(
        &prometheus_config(&target),
        &[("alerts.yml", &quick_rules())],
    );
    let api = Api::new(&server.url());
    let names = exported(&api);

    // Healthy load, with some bad requests so the error panel has a status to show.
    let loader = api.load_until_stopped(200.0);
    for _ in 0..20 {
        let (s, _) = api.call(
            "POST",
            "/api/v1/predict",
            serde_json::json!({"symbol": "NOPE"}),
        );
        assert_eq!(s, 404, "an unknown symbol");
    }
    let ready = Instant::now() + HANG;
    loop {
        let r = query(
            &api,
            &prom.url(),
            "count_over_time(tradeserve_ready[1m]) >= 8",
        );
        if !r["data"]["result"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < ready,
            "Prometheus is not scraping {target}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let queries = panel_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for (title, expr) in &queries {
        let r = query(&api, &prom.url(), expr);
        assert_eq!(r["status"], "success", "{title}: {expr}: {r}");
        assert!(
            !r["data"]["result"].as_array().unwrap().is_empty(),
            "{title}: no data for {expr}"
        );
        for n in names_in(expr) {
            assert!(names.contains(&n), "{title}: {n} is not exported");
        }
    }
    let rules = repo_file("deploy/prometheus/alerts.yml");
    for n in names_in(&rules) {
        assert!(
            names.contains(&n) || MODE_ONLY.contains(&n.as_str()),
            "alerts.yml names {n}, which is not exported"
        );
    }
    let loaded = get(&api, &format!("{}/api/v1/rules", prom.url()));
    let count: usize = loaded["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert_eq!(count, 21, "{loaded}");
    let firing = |api: &Api| -> Vec<Value> {
        get(api, &format!("{}/api/v1/alerts", prom.url()))["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .cloned()
            .collect()
    };
    assert!(
        firing(&api)
            .iter()
            .all(|a| a["labels"]["alertname"] != "TradeServeEventsSpooling"),
        "spooling alert while the broker is up: {:?}",
        firing(&api)
    );

    // The fault: the broker stops under load; events spool and the alert fires.
    broker.kill();
    let t0 = Instant::now();
    let alert = loop {
        if let Some(a) = firing(&api)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "TradeServeEventsSpooling")
        {
            break a;
        }
        assert!(
            t0.elapsed() < HANG,
            "TradeServeEventsSpooling never fired; firing: {:?}",
            firing(&api)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "broker stopped under load: TradeServeEventsSpooling firing after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(alert["labels"]["instance"], target.as_str());
    assert_eq!(alert["labels"]["severity"], "warn");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "docs/RUNBOOK.md#tradeserveeventsspooling"
    );
    // Spooled, never refused: every request of the load got its decision.
    assert_no_failures(&stop_load(loader));

    // A trading halt in force fires its alert, labelled with its scope.
    let (s, h) = api.call(
        "POST",
        "/api/v1/halts",
        serde_json::json!({"scope": {"type": "symbol", "symbol": "AAPL"}, "reason": "drill"}),
    );
    assert_eq!(s, 201, "{h}");
    let halted = tradeserve_testkit::eventually("TradeServeTradingHalted fires", || {
        firing(&api)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "TradeServeTradingHalted")
    });
    assert_eq!(halted["labels"]["scope"], "symbol");
    assert_eq!(halted["labels"]["instance"], target.as_str());
}

#[test]
fn metric_names_are_found_in_queries() {
    let n = names_in("sum(rate(tradeserve_a_total{x=\"tradeserve_not\"}[1m])) / tradeserve_b");
    // A label value that looks like a name is found too: the check is strict, not lenient.
    assert_eq!(
        n,
        ["tradeserve_a_total", "tradeserve_b", "tradeserve_not"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );
}

/// Every alert has a summary, a description and a runbook link to a section that exists.
#[test]
fn every_alert_has_its_text_and_a_runbook_section() {
    let rules = repo_file("deploy/prometheus/alerts.yml");
    let runbook = repo_file("docs/RUNBOOK.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let alerts: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert_eq!(alerts.len(), 21);
    for a in alerts {
        let name = a.lines().next().unwrap().trim();
        for key in ["summary: ", "description: ", "runbook_url: "] {
            assert!(a.contains(key), "{name} has no {key}");
        }
        let url = a
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: "))
            .unwrap()
            .trim_matches('"');
        assert_eq!(url, format!("docs/RUNBOOK.md#{}", name.to_lowercase()));
        assert!(
            anchors.contains(&name.to_lowercase()),
            "no runbook section for {name}"
        );
    }
}
