//! A rollout that starts with a `backtest` stage, on the binary: the candidate is backtested
//! against the champion over the last two days of the service's bars (the bundled history)
//! before any request sees it. A contrarian candidate (version 1's specialists with BUY and SELL swapped, made by
//! `training/degenerate_model.py`) and an always-HOLD one are rolled back by the gate, the
//! report on the rollout and in its audited control event; version 2 passes into shadow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tradeserve_testkit::ServiceProcess;

mod load_common;
use load_common::Api;

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
/// How many times a wait polls (100 ms apart) before the test fails.
const POLLS: usize = 1200;

/// The bundled models plus the degraded candidates: 8 contrarian, 9 always HOLD.
fn models(dir: &Path) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    tradeserve_testkit::models_with_degraded(&repo, dir, &[("8", "contrarian"), ("9", "hold")])
        .display()
        .to_string()
}

/// Create a rollout of `specialists` at `version` with a two-day backtest stage and wait for
/// the gate to move it out of `backtest`; returns the rollout.
fn judged(api: &Api, id: &str, version: &str) -> Value {
    let candidate: Value = ["bull_specialist", "bear_specialist", "sideways_specialist"]
        .iter()
        .map(|r| ((*r).to_owned(), json!(version)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let (s, created) = api.call(
        "POST",
        "/api/v1/rollouts",
        json!({"rollout_id": id, "candidate": candidate, "backtest": {"days": 2}}),
    );
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["stage"], "backtest", "{created}");
    // Polled a bounded number of times (a generous bound that only catches a hang).
    let mut last = Value::Null;
    for _ in 0..POLLS {
        let (s, r) = api.call("GET", &format!("/api/v1/rollouts/{id}"), Value::Null);
        assert_eq!(s, 200, "{r}");
        if r["stage"] != "backtest" {
            return r;
        }
        last = r;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("still backtesting after {POLLS} polls: {last}");
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
#[ignore = "needs the test harness's Python venv (scripts/test.sh runs it)"]
fn a_backtest_stage_rolls_back_degraded_candidates_and_passes_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let env = vec![
        ("TRADESERVE_MODELS__DIR", models(dir.path())),
        ("TRADESERVE_EVENTS__AUDIT_LOG", audit.display().to_string()),
        (
            "TRADESERVE_CONTROL__FILE",
            dir.path().join("control.json").display().to_string(),
        ),
        ("TRADESERVE_CONTROL__GATE_INTERVAL", "200ms".to_owned()),
    ];
    let server = ServiceProcess::start(BIN, &env);
    let api = Api::new(&server.url());

    // Contrarian: as many orders as the champion, the opposite side, a hit rate below 50%.
    // Its book gains what the champion's loses in these two falling days, so its Sharpe
    // ratio is the better one: the hit rate is what catches it.
    let r = judged(&api, "ro-contrarian", "8");
    assert_eq!(r["stage"], "rolled_back", "{r}");
    let report = &r["backtest_report"];
    assert_eq!(report["stage"], "backtest");
    assert_eq!(report["verdict"], "fail");
    assert_eq!(
        check(report, "backtest_hit_rate")["verdict"],
        "fail",
        "{report}"
    );
    assert_eq!(
        check(report, "backtest_orders")["verdict"],
        "pass",
        "{report}"
    );
    assert_eq!(
        check(report, "backtest_sharpe")["verdict"],
        "pass",
        "{report}"
    );
    let b = &report["backtest"];
    assert_eq!(b["symbols"], 24);
    // Two days of 24 symbols (the look-back is in the days before).
    assert_eq!(b["champion"]["decisions"], 2 * 390 * 24);
    assert_eq!(b["candidate"]["decisions"], 2 * 390 * 24);
    assert_eq!(b["from"], "2025-10-20T14:31:00Z");
    assert_eq!(b["to"], "2025-10-21T21:00:00Z");
    assert_eq!(b["candidate"]["orders"], b["champion"]["orders"]);
    let (champ, cand) = (
        b["champion"]["hit_rate"].as_f64().unwrap(),
        b["candidate"]["hit_rate"].as_f64().unwrap(),
    );
    assert!(champ > 0.5 && cand < 0.5, "{champ} {cand}");
    let reason = r["history"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("backtest_hit_rate"), "{reason}");

    // Always HOLD: no orders to judge.
    let r = judged(&api, "ro-hold", "9");
    assert_eq!(r["stage"], "rolled_back", "{r}");
    let report = &r["backtest_report"];
    assert_eq!(
        check(report, "backtest_orders")["verdict"],
        "fail",
        "{report}"
    );
    assert_eq!(report["backtest"]["candidate"]["orders"], 0);

    // Version 2 trades its own signal, as well as the champion: on to shadow.
    let r = judged(&api, "ro-good", "2");
    assert_eq!(r["stage"], "shadow", "{r}");
    let report = &r["backtest_report"];
    assert_eq!(report["verdict"], "pass", "{report}");
    let passed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(passed, ["pass"; 4]);

    // Each gate decision is an audited control event carrying the report.
    let mut polls = 0;
    let gated = loop {
        let events: Vec<Value> = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &Value| e["event_type"] == "control_change" && e["actor"] == "gate")
            .collect();
        polls += 1;
        if events.len() >= 3 || polls >= POLLS {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let moves: Vec<(&str, &str, &str)> = gated
        .iter()
        .map(|e| {
            (
                e["subject_id"].as_str().unwrap(),
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("ro-contrarian", "backtest", "rolled_back"),
            ("ro-hold", "backtest", "rolled_back"),
            ("ro-good", "backtest", "shadow"),
        ]
    );
    for e in &gated {
        assert_eq!(e["detail"]["gate"]["stage"], "backtest", "{e}");
        assert!(
            e["detail"]["gate"]["backtest"]["champion"]["orders"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    let schema = tradeserve_testkit::control_event_schema();
    assert!(gated.iter().all(|e| schema.is_valid(e)));
}
