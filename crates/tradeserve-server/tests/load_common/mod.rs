//! What the load tests on the running binary share: one test at a time, the open-loop load
//! generator from a thread of its own, a blocking API client holding every answer to
//! `openapi.json`, and quick rollout gates.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tradeserve_loadgen::{LoadConfig, Report, run, run_until};
use tradeserve_testkit::{HANG, eventually};

/// The load tests run one at a time: two debug-build services under load on two cores would
/// measure each other.
pub static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

pub fn serial() -> parking_lot::MutexGuard<'static, ()> {
    SERIAL.lock()
}

pub const SYMBOLS: [&str; 8] = ["AAPL", "MSFT", "NVDA", "SPY", "TSLA", "AMZN", "META", "QQQ"];

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn load(url: &str, rate: f64, requests: u64) -> LoadConfig {
    LoadConfig {
        url: url.to_owned(),
        rate,
        requests,
        warmup: 0,
        connections: 16,
        symbols: SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
        extra: None,
        timeout: HANG,
        path: "/api/v1/predict".into(),
        headers: Vec::new(),
        order_ids: None,
        grpc: None,
    }
}

/// Every request got a decision (200 or 403): nothing failed.
pub fn assert_no_failures(report: &Report) {
    let failed: u64 = report
        .statuses
        .iter()
        .filter(|(s, _)| *s != "200" && *s != "403")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed, 0, "statuses {:?}", report.statuses);
    assert_eq!(report.decisions, report.requests, "{report:?}");
}

/// A blocking client of one service's API (`X-Actor: test`).
pub struct Api {
    pub rt: tokio::runtime::Runtime,
    pub client: reqwest::Client,
    pub url: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api {
            rt: runtime(),
            client: reqwest::Client::new(),
            url: url.to_owned(),
        }
    }

    /// `GET`, `DELETE`, or `POST` with a JSON body (none when `body` is null).
    pub fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            "POST" if body.is_null() => self.client.post(url),
            "POST" => self.client.post(url).json(&body),
            other => panic!("method {other}"),
        };
        self.rt.block_on(async {
            let res = req.header("x-actor", "test").send().await.unwrap();
            let status = res.status().as_u16();
            let bytes = res.bytes().await.unwrap();
            tradeserve_testkit::openapi::assert_documented(method, path, status, &bytes);
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }

    /// The text of `GET path` (e.g. `/metrics`), which must answer 200.
    pub fn text(&self, path: &str) -> String {
        self.rt.block_on(async {
            let res = self
                .client
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 200, "{path}");
            res.text().await.unwrap()
        })
    }

    /// One decision (AAPL, no risk check), which must succeed.
    pub fn decide(&self) -> Value {
        let body = json!({"symbol": "AAPL", "risk_check": false});
        let (s, d) = self.call("POST", "/api/v1/predict", body);
        assert_eq!(s, 200, "{d}");
        d
    }

    /// Poll the rollout until it reaches `stage`.
    pub fn wait_stage(&self, id: &str, stage: &str) -> Value {
        eventually(&format!("rollout {id} at {stage}"), || {
            let (_, r) = self.call("GET", &format!("/api/v1/rollouts/{id}"), Value::Null);
            (r["stage"] == stage).then_some(r)
        })
    }

    /// Load at `rate` from a thread of its own until the returned flag is set (at most an
    /// hour of it): for as long as what the test waits for takes on this machine. Set the
    /// flag, then join for the report.
    pub fn load_until_stopped(
        &self,
        rate: f64,
    ) -> (Arc<AtomicBool>, std::thread::JoinHandle<Report>) {
        let config = load(&self.url, rate, (rate * 3600.0) as u64);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let loader =
            std::thread::spawn(move || runtime().block_on(run_until(config, flag)).unwrap());
        (stop, loader)
    }

    /// Load from a thread of its own; join for the report.
    pub fn load_in_background(&self, rate: f64, requests: u64) -> std::thread::JoinHandle<Report> {
        let config = load(&self.url, rate, requests);
        std::thread::spawn(move || runtime().block_on(run(config)).unwrap())
    }
}

/// A load started by [`Api::load_until_stopped`] stopped: its report.
pub fn stop_load(load: (Arc<AtomicBool>, std::thread::JoinHandle<Report>)) -> Report {
    load.0.store(true, Ordering::Relaxed);
    load.1.join().unwrap()
}

/// Gates that pass on a healthy candidate in a debug build within about a second a stage.
pub fn quick_gates() -> Value {
    json!({
        "min_decisions": 100,
        "durations": {"shadow": "1s", "canary": "1s", "partial": "1s", "full": "1s"},
        "max_latency_increase": 20.0,
        "max_error_rate": 0.0,
        "min_agreement": 0.0,
        "outcome_alpha": 0.0
    })
}

/// `tradeserve risk rebuild-shared --flat … --write`: a new, empty shared risk ledger at
/// `redis_url` under `prefix` (a ledger without a generation refuses every order).
pub fn new_shared_ledger(redis_url: &str, prefix: &str) {
    let bin = env!("CARGO_BIN_EXE_tradeserve");
    tradeserve_testkit::rebuild_shared_ledger(bin, redis_url, prefix, &["--flat"]);
}

/// Risk limits out of reach (environment of a service): only the checks a test sets refuse.
pub fn roomy_risk_envs() -> Vec<(&'static str, String)> {
    [
        ("TRADESERVE_RISK__MAX_POSITION_SHARES", "1000000000000"),
        (
            "TRADESERVE_RISK__MAX_POSITION_NOTIONAL",
            "1000000000000000000.0",
        ),
        ("TRADESERVE_RISK__MAX_CONCENTRATION", "1.0"),
        (
            "TRADESERVE_RISK__PORTFOLIO_CAPITAL",
            "100000000000000000000.0",
        ),
        (
            "TRADESERVE_RISK__MAX_ORDER_NOTIONAL",
            "1000000000000000000.0",
        ),
        ("TRADESERVE_RISK__MAX_DAILY_ORDERS", "1000000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// Up to `n` risk-checked request bodies, on different symbols, whose decisions trade shares
/// (found with `ask`, which answers a request body with its status and decision).
pub fn trading_orders(n: usize, mut ask: impl FnMut(&Value) -> (u16, Value)) -> Vec<Value> {
    let mut found = Vec::new();
    for symbol in ["AAPL", "MSFT", "NVDA", "AMZN", "SPY", "TSLA"] {
        for hour in 14..20 {
            let body = json!({"symbol": symbol, "timestamp": format!("2025-10-20T{hour}:30:00Z"), "risk_check": false});
            let (s, d) = ask(&body);
            assert_eq!(s, 200, "{d}");
            if d["action"] != "HOLD" && d["recommended_quantity"].as_u64().unwrap() > 0 {
                let mut risky = body;
                risky["risk_check"] = json!(true);
                found.push(risky);
                break;
            }
        }
        if found.len() == n {
            break;
        }
    }
    assert_eq!(found.len(), n, "symbols that trade: {found:?}");
    found
}
