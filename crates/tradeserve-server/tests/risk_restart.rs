//! The risk books across restarts of the release binary, as a compliance tester would try
//! them: retention deleting the files that held the orders, then `kill -9`, must not reopen a
//! position limit; a start whose history is missing refuses risk-checked orders and says why
//! until an operator reconciles with `tradeserve risk`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tradeserve_events::audit_log::rotated_files;
use tradeserve_events::books::checkpoint_path;
use tradeserve_testkit::{ServiceProcess, wait_for};

mod load_common;
use load_common::Api;

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

/// An AAPL order the models size at 60 shares (BUY) at this instant.
fn order() -> Value {
    json!({"symbol": "AAPL", "timestamp": "2025-10-14T15:00:00Z"})
}

/// Limit 1,000 shares, rotation at 20 kB, one rotated file kept.
fn start(dir: &Path) -> ServiceProcess {
    start_with(dir, &[])
}

/// [`start`] with more settings.
fn start_with(dir: &Path, more: &[(&str, &str)]) -> ServiceProcess {
    let path = |p: &str| dir.join(p).display().to_string();
    let mut env = vec![
        ("TRADESERVE_EVENTS__AUDIT_LOG", path("audit.jsonl")),
        ("TRADESERVE_CONTROL__FILE", path("control.json")),
        ("TRADESERVE_RISK__MAX_POSITION_SHARES", "1000".into()),
        ("TRADESERVE_EVENTS__AUDIT_ROTATE_BYTES", "20000".into()),
        ("TRADESERVE_EVENTS__AUDIT_RETAIN_FILES", "1".into()),
        // Orders are counted at the wall clock: one latch window spans the whole test (its
        // next boundary is centuries away), so no run crosses one.
        (
            "TRADESERVE_RISK__REPEATED_EXECUTION_WINDOW",
            "100000days".into(),
        ),
    ];
    env.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    ServiceProcess::start(BIN, &env)
}

/// Orders approved in a row until the first refusal, which must be the position limit.
fn approvals_until_the_limit(api: &Api) -> u64 {
    let mut approved = 0;
    loop {
        let (s, d) = api.call("POST", "/api/v1/predict", order());
        match s {
            200 => {
                assert_eq!(d["action"], "BUY", "{d}");
                assert_eq!(d["recommended_quantity"], 60, "{d}");
                approved += 1;
            }
            403 => {
                assert_eq!(
                    d["risk_validation"]["checks"]["position_limit"], "fail",
                    "{d}"
                );
                return approved;
            }
            other => panic!("{other}: {d}"),
        }
        assert!(approved < 100, "no limit after {approved} orders");
    }
}

fn kill_9(mut server: ServiceProcess) {
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGKILL).unwrap();
    server.child.wait().unwrap();
}

/// Ten approved orders (600 shares), then 100 decisions without a risk check, so that
/// retention deletes the files holding the orders; then `kill -9`.
fn orders_then_retention(dir: &Path) {
    let server = start(dir);
    let api = Api::new(&server.url());
    for _ in 0..10 {
        let (s, d) = api.call("POST", "/api/v1/predict", order());
        assert_eq!((s, &d["recommended_quantity"]), (200, &json!(60)), "{d}");
    }
    for _ in 0..100 {
        let (s, d) = api.call(
            "POST",
            "/api/v1/predict",
            json!({"symbol": "MSFT", "risk_check": false}),
        );
        assert_eq!(s, 200, "{d}");
    }
    // Retention runs after the syncer's next group commit, off the request path.
    let log = dir.join("audit.jsonl");
    wait_for("retention to delete the older files", || {
        rotated_files(&log).len() == 1
    });
    kill_9(server);
    let first_order = std::fs::read_to_string(&rotated_files(&log)[0]).unwrap();
    assert!(
        !first_order.contains("\"symbol\":\"AAPL\""),
        "the files holding the orders were deleted"
    );
}

#[test]
fn retention_then_kill_9_does_not_reopen_a_position_limit() {
    let dir = tempfile::tempdir().unwrap();
    orders_then_retention(dir.path());
    // 600 shares held: 6 more orders of 60 (960), the 7th would be 1,020.
    let server = start(dir.path());
    let api = Api::new(&server.url());
    assert_eq!(approvals_until_the_limit(&api), 6);
    let (s, _) = api.call("GET", "/health/ready", Value::Null);
    assert_eq!(s, 200);
}

#[test]
fn retention_then_kill_9_does_not_restart_the_repeated_execution_latch_count() {
    let dir = tempfile::tempdir().unwrap();
    // Ten orders in one latch window, carried by the checkpoint when retention deleted their
    // file; then `kill -9` within the same window.
    orders_then_retention(dir.path());
    let cp = std::fs::read_to_string(checkpoint_path(&dir.path().join("audit.jsonl"))).unwrap();
    let cp: Value = serde_json::from_str(&cp).unwrap();
    assert_eq!(cp["latch"]["window_ms"], 100_000 * 86_400_000_i64, "{cp}");
    assert_eq!(cp["latch"]["symbols"]["AAPL"][1], 10, "{cp}");
    // At most 12 a window: orders 11 and 12 pass, the 13th trips the latch (the position
    // limit is 6 orders away). A count started over would approve 6 more and stop at the
    // position limit instead.
    let server = start_with(
        dir.path(),
        &[("TRADESERVE_RISK__REPEATED_EXECUTION_MAX", "12")],
    );
    let api = Api::new(&server.url());
    for _ in 0..2 {
        let (s, d) = api.call("POST", "/api/v1/predict", order());
        assert_eq!(s, 200, "{d}");
    }
    let (s, d) = api.call("POST", "/api/v1/predict", order());
    assert_eq!(s, 403, "{d}");
    let checks = &d["risk_validation"]["checks"];
    assert_eq!(checks["repeated_execution"], "fail", "{d}");
    assert_eq!(checks["position_limit"], "pass", "{d}");
}

#[test]
fn a_start_with_its_history_missing_refuses_orders_until_an_operator_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    orders_then_retention(dir.path());
    // The checkpoint is lost (a restore from an old backup, a wrong volume): the retained
    // files begin mid-chain, and nothing says what came before.
    std::fs::remove_file(checkpoint_path(&dir.path().join("audit.jsonl"))).unwrap();
    let server = start(dir.path());
    let api = Api::new(&server.url());
    let (s, r) = api.call("GET", "/health/ready", Value::Null);
    assert_eq!(s, 503, "{r}");
    let why = r["error"]["message"].as_str().unwrap();
    assert!(
        why.contains("risk books history missing") && why.contains("tradeserve risk"),
        "{why}"
    );
    let (s, d) = api.call("POST", "/api/v1/predict", order());
    assert_eq!(
        (s, &d["error"]["code"]),
        (503, &json!("risk_unavailable")),
        "{d}"
    );
    // A decision without a risk check books nothing, and is still served.
    let (s, d) = api.call(
        "POST",
        "/api/v1/predict",
        json!({"symbol": "AAPL", "risk_check": false}),
    );
    assert_eq!(s, 200, "{d}");
    kill_9(server);

    // The operator sees what is missing, then what a flat baseline would load, then writes it.
    let log = dir.path().join("audit.jsonl");
    let risk = |args: &[&str]| {
        Command::new(BIN)
            .arg("risk")
            .args(args)
            .arg("--audit-log")
            .arg(&log)
            .output()
            .unwrap()
    };
    let out = risk(&["show"]);
    assert!(!out.status.success());
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "missing", "{shown}");
    let args = [
        "reconcile",
        "--flat",
        "--by",
        "risk-officer",
        "--reason",
        "checkpoint lost",
    ];
    let out = risk(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let preview: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(preview["written"], false, "{preview}");
    assert!(!checkpoint_path(&log).exists(), "a preview writes nothing");
    let out = risk(&[&args[..], &["--write"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(written["reconciled"]["by"], "risk-officer", "{written}");
    let out = risk(&["show"]);
    assert!(out.status.success());

    // Trading again, from the operator's baseline (flat before the retained lines, which
    // hold no AAPL order): 16 orders of 60 fit under 1,000.
    let server = start(dir.path());
    let api = Api::new(&server.url());
    let (s, _) = api.call("GET", "/health/ready", Value::Null);
    assert_eq!(s, 200);
    assert_eq!(approvals_until_the_limit(&api), 16);
}
