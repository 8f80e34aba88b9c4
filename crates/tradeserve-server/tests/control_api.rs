//! Experiments, rollouts, outcomes and the kill switch through the router: response shapes,
//! status codes, routing of decisions to arms, and the audit events behind them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tradeserve_core::experiment;

mod common;
use common::*;
use tradeserve_testkit::HANG;

const EXP: &str = r#"{"experiment_id":"exp-1","role":"bull_specialist","control_model_version":"1","treatment_model_version":"2","traffic_split":0.5}"#;

async fn post(h: &Harness, path: &str, body: &str) -> (StatusCode, Value) {
    call_with(h, "POST", path, &[("x-actor", "alice")], body).await
}

async fn get(h: &Harness, path: &str) -> (StatusCode, Value) {
    call_with(h, "GET", path, &[], "").await
}

#[tokio::test]
async fn experiment_lifecycle_and_validation() {
    let h = harness();
    let (s, e) = post(&h, "/api/v1/experiments", EXP).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    assert_eq!(
        keys(&e),
        set(&[
            "experiment_id",
            "role",
            "control_model_version",
            "treatment_model_version",
            "traffic_split",
            "metrics_to_track",
            "bucketing",
            "salt",
            "description",
            "status",
            "created_at",
            "updated_at",
            "stopped_at",
            "stop_reason",
        ])
    );
    assert_eq!(
        (&e["status"], &e["bucketing"], &e["salt"]),
        (&json!("running"), &json!("symbol_date"), &json!("exp-1"))
    );

    // One at a time, ids unique.
    let (s, v) = post(&h, "/api/v1/experiments", EXP).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict");
    let other = EXP.replace("exp-1", "exp-2");
    let (s, v) = post(&h, "/api/v1/experiments", &other).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict");

    // Bad input, each with its status and field.
    let cases: &[(&str, StatusCode, &str, Option<&str>)] = &[
        ("not json", StatusCode::BAD_REQUEST, "malformed_json", None),
        ("[1]", StatusCode::BAD_REQUEST, "not_an_object", None),
        (
            &EXP.replace("0.5", "1.5").replace("exp-1", "x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("traffic_split"),
        ),
        (
            &EXP.replace("\"2\"", "2"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            Some("treatment_model_version"),
        ),
        (
            &EXP.replace("bull_specialist", "alpha"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("role"),
        ),
        (
            &EXP.replace("}", r#","colour":1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            Some("colour"),
        ),
    ];
    for (body, status, code, field) in cases {
        let (s, v) = post(&h, "/api/v1/experiments", body).await;
        assert_eq!(s, *status, "{body}: {v}");
        assert_error(&v, code);
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], *f, "{body}: {v}");
        }
    }

    // Change the split; the unit definition cannot change.
    let (s, v) = call_with(
        &h,
        "PUT",
        "/api/v1/experiments/exp-1",
        &[],
        r#"{"traffic_split":0.8}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["traffic_split"], 0.8);
    let (s, v) = call_with(
        &h,
        "PUT",
        "/api/v1/experiments/exp-1",
        &[],
        r#"{"salt":"x"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v, "unknown_field");
    let (s, v) = call_with(
        &h,
        "PUT",
        "/api/v1/experiments/nope",
        &[],
        r#"{"traffic_split":0.1}"#,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");

    // Stop; a second stop conflicts; the record and report stay.
    let (s, v) = call_with(
        &h,
        "DELETE",
        "/api/v1/experiments/exp-1",
        &[("x-actor", "bob")],
        r#"{"reason":"enough data"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["status"], &v["stop_reason"]),
        (&json!("stopped"), &json!("enough data"))
    );
    let (s, _) = call_with(&h, "DELETE", "/api/v1/experiments/exp-1", &[], "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = get(&h, "/api/v1/experiments").await;
    assert_eq!(
        (s, v["experiments"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (s, _) = get(&h, "/api/v1/experiments/exp-1/report").await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = get(&h, "/api/v1/experiments/zz/report").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");

    // A version that does not exist is refused before anything is stored.
    let missing = EXP.replace("\"2\"", "\"7\"").replace("exp-1", "exp-3");
    let (s, v) = post(&h, "/api/v1/experiments", &missing).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_error(&v, "unknown_model_version");
    assert_eq!(h.service.state.control.view().experiments.len(), 1);

    // Every change is audited: created, updated, stopped, with who and why.
    flush(&h);
    let changes: Vec<Value> = audit_events(&h)
        .into_iter()
        .filter(|e| e["event_type"] == "control_change")
        .collect();
    let control_schema = tradeserve_testkit::control_event_schema();
    for e in &changes {
        assert!(control_schema.is_valid(e), "{e}");
    }
    let actions: Vec<&str> = changes
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "updated", "stopped"]);
    assert_eq!(changes[0]["actor"], "alice");
    assert_eq!(
        (&changes[2]["actor"], &changes[2]["reason"]),
        (&json!("bob"), &json!("enough data"))
    );
    assert_eq!(changes[2]["detail"]["status"], "stopped");
}

#[tokio::test]
async fn decisions_follow_the_split_and_carry_their_arm() {
    let h = harness();
    let body = EXP.replace("}", r#","bucketing":"client","salt":"s1"}"#);
    let (s, _) = post(&h, "/api/v1/experiments", &body).await;
    assert_eq!(s, StatusCode::CREATED);
    let mut arm_of: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..400 {
        let client = format!("client-{}", i % 80);
        let (s, d) = call_with(
            &h,
            "POST",
            "/api/v1/predict",
            &[("x-client-id", &client)],
            r#"{"symbol":"AAPL","risk_check":false}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{d}");
        let arm = d["metadata"]["experiment"]["arm"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(d["metadata"]["experiment"]["id"], "exp-1");
        // The arm is the published rule, and the treatment arm runs version 2 of the role.
        let bucket = experiment::bucket("s1", &client);
        let want = if f64::from(bucket) < 0.5 * 10_000.0 {
            "treatment"
        } else {
            "control"
        };
        assert_eq!(arm, want, "{client} bucket {bucket}");
        let v = &d["metadata"]["model_versions"]["bull_specialist"];
        assert_eq!(v, if arm == "treatment" { "2" } else { "1" });
        assert_eq!(d["metadata"]["model_versions"]["bear_specialist"], "1");
        // The same client always lands in the same arm.
        let prev = arm_of.entry(client).or_insert_with(|| arm.clone());
        assert_eq!(*prev, arm);
    }
    let treated = arm_of.values().filter(|a| *a == "treatment").count();
    assert!(
        treated > 20 && treated < 60,
        "{treated} of 80 clients treated"
    );

    let (_, report) = get(&h, "/api/v1/experiments/exp-1/report").await;
    let arms = &report["arms"];
    let n = |a: &str| arms[a]["decisions"].as_u64().unwrap();
    assert_eq!(n("control") + n("treatment"), 400);
    assert_eq!(
        keys(&report),
        set(&[
            "experiment_id",
            "status",
            "role",
            "control_model_version",
            "treatment_model_version",
            "traffic_split",
            "bucketing",
            "metrics_to_track",
            "scope",
            "replicas",
            "fleet_error",
            "since",
            "observed_treatment_share",
            "arms",
            "comparison",
        ])
    );
    // One process with the file store: this replica alone, and it says so.
    assert_eq!(
        (&report["scope"], &report["fleet_error"]),
        (&json!("this replica"), &Value::Null)
    );
    assert_eq!(report["replicas"].as_array().unwrap().len(), 1);
    assert_eq!(report["replicas"][0]["decisions"], 400);
    assert_eq!(report["replicas"][0]["published_at"], Value::Null);
    assert_eq!(
        keys(&arms["treatment"]),
        set(&[
            "decisions",
            "errors",
            "error_rate",
            "latency_ms",
            "inference_p99_us",
            "action_mix",
            "mean_confidence",
            "risk_reject_rate",
            "outcomes",
            "win_rate",
            "mean_return",
            "sharpe",
        ])
    );
    assert!(arms["treatment"]["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let mix = &arms["control"]["action_mix"];
    let total: f64 = ["BUY", "SELL", "HOLD"]
        .iter()
        .map(|k| mix[k].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-9, "{mix}");
    assert_eq!(
        keys(&report["comparison"]),
        set(&[
            "welch_p_value",
            "mean_return_diff",
            "sharpe_diff",
            "sharpe_diff_ci95"
        ])
    );

    // The events carry experiment id, arm and bucket, and the client.
    flush(&h);
    let decisions: Vec<Value> = audit_events(&h)
        .into_iter()
        .filter(|e| e["event_type"] == "trading_decision")
        .collect();
    assert_eq!(decisions.len(), 400);
    let schema = tradeserve_testkit::event_schema();
    for e in &decisions {
        let client = e["client_id"].as_str().unwrap();
        assert_eq!(e["experiment"]["bucket"], experiment::bucket("s1", client));
        assert!(schema.is_valid(e), "{e}");
    }
}

#[tokio::test]
async fn metrics_to_track_limits_the_report() {
    let h = harness();
    let body = EXP.replace("}", r#","metrics_to_track":["latency"]}"#);
    let (s, _) = post(&h, "/api/v1/experiments", &body).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, report) = get(&h, "/api/v1/experiments/exp-1/report").await;
    assert_eq!(
        keys(&report["arms"]["control"]),
        set(&["decisions", "errors", "latency_ms", "inference_p99_us"])
    );
}

#[tokio::test]
async fn posted_outcomes_are_credited_once() {
    let h = harness_with(|c| c.control.derive_outcomes = false);
    let (s, _) = post(&h, "/api/v1/experiments", &EXP.replace("0.5", "1.0")).await;
    assert_eq!(s, StatusCode::CREATED);
    // A decision that traded (approved BUY or SELL).
    let mut id = None;
    for sym in [
        "AAPL", "MSFT", "NVDA", "SPY", "TSLA", "AMZN", "META", "GOOGL",
    ] {
        let (s, d) = predict(&h, &format!(r#"{{"symbol":"{sym}","risk_check":false}}"#)).await;
        assert_eq!(s, StatusCode::OK);
        if d["action"] != "HOLD" {
            id = Some(d["decision_id"].as_str().unwrap().to_owned());
            break;
        }
    }
    let id = id.expect("some symbol trades at this bar");
    let body = format!(r#"{{"decision_id":"{id}","realized_return":0.004}}"#);
    let (s, v) = post(&h, "/api/v1/outcomes", &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"decision_id": id, "credited": [{"kind": "experiment", "id": "exp-1", "arm": "treatment"}]})
    );
    let (s, v) = post(&h, "/api/v1/outcomes", &body).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "outcome_exists");
    let unknown = r#"{"decision_id":"01a216dd-1bc7-7449-b1d3-2eab0f76fd4d","realized_return":0.1}"#;
    let (s, v) = post(&h, "/api/v1/outcomes", unknown).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "unknown_decision");
    // Valid JSON whose number does not fit the field: the field is wrong, not the JSON.
    let (s, v) = post(&h, "/api/v1/outcomes", &body.replace("0.004", "1e400")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["field"], "realized_return");
    let (s, v) = post(&h, "/api/v1/outcomes", &body.replace("0.004", "-50")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["field"], "realized_return");
    let (s, v) = post(
        &h,
        "/api/v1/outcomes",
        r#"{"decision_id":"nope","realized_return":0}"#,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, report) = get(&h, "/api/v1/experiments/exp-1/report").await;
    let t = &report["arms"]["treatment"];
    assert_eq!(
        (t["outcomes"].as_u64(), t["win_rate"].as_f64()),
        (Some(1), Some(1.0))
    );
    assert!((t["mean_return"].as_f64().unwrap() - 0.004).abs() < 1e-12);
}

#[tokio::test]
async fn derived_outcomes_fill_the_report() {
    let h = harness();
    let (s, _) = post(
        &h,
        "/api/v1/experiments",
        &EXP.replace("}", r#","bucketing":"decision"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    for i in 0..300 {
        let sym = ["AAPL", "MSFT", "NVDA", "SPY", "TSLA", "AMZN"][i % 6];
        let (s, _) = predict(&h, &format!(r#"{{"symbol":"{sym}","risk_check":false}}"#)).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (_, report) = get(&h, "/api/v1/experiments/exp-1/report").await;
    for arm in ["control", "treatment"] {
        let a = &report["arms"][arm];
        assert!(a["outcomes"].as_u64().unwrap() > 20, "{arm}: {a}");
        assert!(a["win_rate"].as_f64().is_some());
    }
    // Several symbols, so returns vary and the tests have something to compare.
    let c = &report["comparison"];
    let p = c["welch_p_value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{c}");
    let ci = c["sharpe_diff_ci95"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() <= ci[1].as_f64().unwrap());
}

fn rollout_body(id: &str, extra: &str) -> String {
    format!(
        r#"{{"rollout_id":"{id}","candidate":{{"bull_specialist":"2","sideways_specialist":"2"}},"auto_promote":false{extra}}}"#
    )
}

#[tokio::test]
async fn a_manual_rollout_walks_every_stage_and_becomes_champion() {
    let h = harness();
    let (s, r) = post(&h, "/api/v1/rollouts", &rollout_body("ro-1", "")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        (&r["stage"], &r["candidate_share"]),
        (&json!("shadow"), &json!(0.0))
    );
    assert_eq!(r["candidate"]["bull_specialist"], "2");
    assert_eq!(r["candidate"]["regime_detector"], "1");
    assert_eq!(r["baseline"]["bull_specialist"], "1");
    let (s, v) = post(&h, "/api/v1/rollouts", &rollout_body("ro-2", "")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict");

    // Shadow: every decision is control, and its event carries the candidate's decision.
    for _ in 0..20 {
        let (s, d) = predict(&h, r#"{"symbol":"AAPL"}"#).await;
        assert!(s == StatusCode::OK || s == StatusCode::FORBIDDEN);
        assert_eq!(d["metadata"]["rollout"]["arm"], "control");
        assert_eq!(d["metadata"]["rollout"]["stage"], "shadow");
        assert_eq!(d["metadata"]["model_versions"]["bull_specialist"], "1");
    }
    let mut shares = Vec::new();
    for stage in ["canary", "partial", "full"] {
        let (s, r) = post(
            &h,
            "/api/v1/rollouts/ro-1/promote",
            r#"{"reason":"looks fine"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["stage"], stage);
        let mut candidate = 0;
        const DAYS: [u32; 12] = [6, 7, 8, 9, 10, 13, 14, 15, 16, 17, 20, 21];
        for i in 0..200 {
            // symbol_date units: vary the (trading) day through point-in-time requests.
            let (symbol, day) = (["AAPL", "MSFT", "NVDA", "SPY"][i % 4], DAYS[i % 12]);
            let body = format!(
                r#"{{"symbol":"{symbol}","timestamp":"2025-10-{day:02}T16:00:00Z","risk_check":false}}"#
            );
            let (s, d) = predict(&h, &body).await;
            assert_eq!(s, StatusCode::OK, "{body}: {d}");
            if d["metadata"]["rollout"]["arm"] == "treatment" {
                candidate += 1;
                assert_eq!(d["metadata"]["model_versions"]["sideways_specialist"], "2");
            }
        }
        shares.push(candidate);
    }
    assert!(
        shares[0] < shares[1] && shares[1] <= shares[2],
        "{shares:?}"
    );
    assert_eq!(shares[2], 200, "full sends every unit to the candidate");
    let (s, r) = post(&h, "/api/v1/rollouts/ro-1/promote", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["stage"], "completed");
    let (s, v) = post(&h, "/api/v1/rollouts/ro-1/promote", "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict");
    // The candidate is the champion now: what /models says and what decisions use.
    let (_, m) = get(&h, "/api/v1/models").await;
    assert_eq!(m["models"]["bull_specialist"]["version"], "2");
    let (_, d) = predict(&h, r#"{"symbol":"AAPL"}"#).await;
    assert!(d["metadata"]["rollout"].is_null());
    assert_eq!(d["metadata"]["model_versions"]["sideways_specialist"], "2");

    flush(&h);
    // The metrics tell the same story.
    let (_, _, text) = call(&h, "GET", "/metrics", axum::body::Body::empty()).await;
    let metric = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{series} missing"))
    };
    let changes = "tradeserve_control_changes_total";
    assert_eq!(
        metric(&format!(
            r#"{changes}{{action="promoted",subject="rollout"}}"#
        )),
        3.0
    );
    assert_eq!(
        metric(&format!(
            r#"{changes}{{action="completed",subject="rollout"}}"#
        )),
        1.0
    );
    assert_eq!(metric("tradeserve_rollout_stage"), 0.0);
    let treated: usize = shares.iter().sum();
    assert_eq!(
        metric(r#"tradeserve_arm_decisions_total{arm="treatment",kind="rollout"}"#),
        treated as f64
    );
    let shadow = "tradeserve_shadow_runs_total";
    let runs = metric(&format!(r#"{shadow}{{result="agreed"}}"#))
        + metric(&format!(r#"{shadow}{{result="disagreed"}}"#));
    assert_eq!(runs, 20.0);
    let events = audit_events(&h);
    let of_type = |t: &str, stage: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["event_type"] == t && e["rollout"]["stage"] == stage)
            .collect()
    };
    // Each shadowed decision: its own event (recorded before it was answered) and one
    // shadow result joined on decision_id.
    let decided = of_type("trading_decision", "shadow");
    let shadowed = of_type("shadow_result", "shadow");
    assert_eq!((decided.len(), shadowed.len()), (20, 20));
    for e in &shadowed {
        let d = decided
            .iter()
            .find(|d| d["decision_id"] == e["decision_id"])
            .expect("the shadowed decision's own event");
        assert_eq!(e["action"], d["action"]);
        let s = &e["shadow"];
        assert_eq!(s["model_versions"]["bull_specialist"], "2", "{e}");
        assert!(["BUY", "SELL", "HOLD"].contains(&s["action"].as_str().unwrap()));
        assert_eq!(s["agreed"], json!(s["action"] == d["action"]));
    }
    let (decision_schema, control_schema, shadow_schema) = (
        tradeserve_testkit::event_schema(),
        tradeserve_testkit::control_event_schema(),
        tradeserve_testkit::shadow_event_schema(),
    );
    for e in &events {
        let schema = match e["event_type"].as_str() {
            Some("control_change") => &control_schema,
            Some("shadow_result") => &shadow_schema,
            _ => &decision_schema,
        };
        let errors: Vec<String> = schema.iter_errors(e).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}: {e}");
    }
    let transitions: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["event_type"] == "control_change")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [
            ("created", "shadow"),
            ("promoted", "canary"),
            ("promoted", "partial"),
            ("promoted", "full"),
            ("completed", "completed")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
}

#[tokio::test]
async fn rollouts_refuse_bad_candidates_and_unknown_ids() {
    let h = harness();
    let same = r#"{"candidate":{"bull_specialist":"1"}}"#;
    let (s, v) = post(&h, "/api/v1/rollouts", same).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["field"], "candidate");
    let (s, v) = post(
        &h,
        "/api/v1/rollouts",
        r#"{"candidate":{"bull_specialist":"9"}}"#,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v, "unknown_model_version");
    let (s, v) = post(
        &h,
        "/api/v1/rollouts",
        r#"{"candidate":{"bull_specialist":"2"},"gates":{"min_agreement":2}}"#,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["field"], "gates.min_agreement");
    for action in ["promote", "pause", "rollback"] {
        let (s, v) = post(&h, &format!("/api/v1/rollouts/nope/{action}"), "").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{action}");
        assert_error(&v, "not_found");
    }
    let (s, _) = get(&h, "/api/v1/rollouts/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Pause, then roll back; a rolled-back rollout cannot move.
    let (s, _) = post(&h, "/api/v1/rollouts", &rollout_body("ro-1", "")).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, r) = post(&h, "/api/v1/rollouts/ro-1/pause", "").await;
    assert_eq!((s, &r["paused"]), (StatusCode::OK, &json!(true)));
    let (s, r) = post(
        &h,
        "/api/v1/rollouts/ro-1/rollback",
        r#"{"reason":"bad fills"}"#,
    )
    .await;
    assert_eq!((s, &r["stage"]), (StatusCode::OK, &json!("rolled_back")));
    assert_eq!(
        r["history"].as_array().unwrap().last().unwrap()["reason"],
        "bad fills"
    );
    let (s, _) = post(&h, "/api/v1/rollouts/ro-1/promote", "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = get(&h, "/api/v1/rollouts").await;
    assert_eq!(
        (s, v["rollouts"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
}

#[tokio::test]
async fn the_kill_switch_sends_everything_to_control_and_persists() {
    let h = harness();
    let (s, _) = post(&h, "/api/v1/experiments", &EXP.replace("0.5", "1.0")).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = post(&h, "/api/v1/rollouts", &rollout_body("ro-1", "")).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, r) = post(&h, "/api/v1/rollouts/ro-1/promote", "").await;
    assert_eq!((s, &r["stage"]), (StatusCode::OK, &json!("canary")));
    let (s, v) = post(&h, "/api/v1/rollback", r#"{"reason":"drill"}"#).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["kill_switch"],
        json!({"actor": "alice", "at": v["kill_switch"]["at"], "reason": "drill", "experiments_stopped": 1, "rollouts_rolled_back": 1})
    );
    for _ in 0..50 {
        let (_, d) = predict(&h, r#"{"symbol":"NVDA","risk_check":false}"#).await;
        assert!(
            d["metadata"]["experiment"].is_null() && d["metadata"]["rollout"].is_null(),
            "{d}"
        );
        assert_eq!(d["metadata"]["model_versions"]["bull_specialist"], "1");
    }
    // Stored: a restarted service (same state file) starts with everything stopped.
    let file = h.service.state.control.describe_store();
    assert!(file.contains("control.json"), "{file}");
    let stored: Value =
        serde_json::from_slice(&std::fs::read(h._dir.path().join("control.json")).unwrap())
            .unwrap();
    assert_eq!(stored["experiments"][0]["status"], "stopped");
    assert_eq!(stored["rollouts"][0]["stage"], "rolled_back");
    assert_eq!(stored["kill_switch"]["reason"], "drill");
}

#[tokio::test]
async fn a_restart_resumes_the_stored_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("control.json");
    let f = file.clone();
    let h = harness_with(move |c| c.control.file = f);
    let (s, _) = post(&h, "/api/v1/experiments", &EXP.replace("0.5", "1.0")).await;
    assert_eq!(s, StatusCode::CREATED);
    drop(h);
    let f = file.clone();
    let h = harness_with(move |c| c.control.file = f);
    assert!(h.service.state.control.refresh().await.unwrap());
    let (_, d) = predict(&h, r#"{"symbol":"AAPL","risk_check":false}"#).await;
    assert_eq!(
        d["metadata"]["experiment"],
        json!({"id": "exp-1", "arm": "treatment"})
    );
    assert_eq!(d["metadata"]["model_versions"]["bull_specialist"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn a_redis_outage_keeps_the_champion_serving_and_the_kill_switch_working() {
    let redis = tradeserve_testkit::RedisServer::start();
    let (port, url) = (redis.port, redis.url());
    let h = harness_with(move |c| {
        c.control.store = tradeserve_server::config::StoreKind::Redis;
        c.control.redis_url = url;
        c.control.store_timeout = tradeserve_core::bounded::PositiveDuration::millis(300);
    });
    let (s, _) = post(&h, "/api/v1/experiments", &EXP.replace("0.5", "1.0")).await;
    assert_eq!(s, StatusCode::CREATED);

    // Redis goes away: decisions keep flowing on the last known state…
    drop(redis);
    assert!(h.service.state.control.refresh().await.is_err());
    let (s, d) = predict(&h, r#"{"symbol":"AAPL","risk_check":false}"#).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["metadata"]["experiment"]["arm"], "treatment");
    // …changes that need the shared state are refused, with the reason…
    let other = EXP.replace("exp-1", "exp-2");
    let (s, v) = post(&h, "/api/v1/experiments", &other).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_error(&v, "control_store_unavailable");
    let (_, _, text) = call(&h, "GET", "/metrics", axum::body::Body::empty()).await;
    assert!(text.contains("tradeserve_control_store_up 0"), "{text}");
    // …but the kill switch works here at once, and says it is not stored yet.
    let (s, v) = post(&h, "/api/v1/rollback", r#"{"reason":"redis down"}"#).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["persisted"], false);
    let (_, d) = predict(&h, r#"{"symbol":"AAPL","risk_check":false}"#).await;
    assert!(d["metadata"]["experiment"].is_null(), "{d}");
    assert_eq!(d["metadata"]["model_versions"]["bull_specialist"], "1");

    // Redis is back (empty): the poller stores the kill switch for the other replicas.
    let _redis = tradeserve_testkit::RedisServer::start_on(port);
    let deadline = std::time::Instant::now() + HANG;
    while h.service.state.control.refresh().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "store never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!h.service.state.control.kill_pending());
    let store = tradeserve_redis::control_store::RedisStore::new(
        &format!("redis://127.0.0.1:{port}/0"),
        "tradeserve",
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    use tradeserve_core::ports::ControlStore;
    let stored = store.load().await.unwrap();
    assert_eq!(stored.kill_switch.unwrap().reason, "redis down");
}

#[tokio::test]
async fn a_stage_whose_candidate_gets_no_traffic_says_so() {
    let h = harness_with(|c| c.control.stage_idle_after = std::time::Duration::from_millis(200));
    let state = &h.service.state;
    let spec = r#"{"rollout_id":"ro-quiet","candidate":{"bull_specialist":"2"},"auto_promote":false,"gates":{"min_decisions":1000}}"#;
    let (s, v) = post(&h, "/api/v1/rollouts", spec).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let starved = |report: &tradeserve_core::rollout::GateReport| {
        report
            .checks
            .iter()
            .any(|c| c.name == tradeserve_core::rollout::GateName::Traffic)
    };
    let first = state.control.tick_gates().await.unwrap();
    assert!(!starved(&first));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let idle = state.control.tick_gates().await.unwrap();
    assert!(starved(&idle), "{idle:?}");
    let (_, r) = get(&h, "/api/v1/rollouts/ro-quiet").await;
    let checks = r["last_gate"]["checks"].as_array().unwrap();
    let traffic = checks.iter().find(|c| c["name"] == "traffic").unwrap();
    assert_eq!(traffic["verdict"], "wait");
    assert!(
        traffic["detail"].as_str().unwrap().contains("no traffic"),
        "{traffic}"
    );
    assert_eq!(state.metrics.control.rollout_starved.get(), 1);

    // One decision: the shadow candidate runs, and the stage is no longer starved.
    let (s, _) = post(
        &h,
        "/api/v1/predict",
        r#"{"symbol":"AAPL","risk_check":false}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let until = std::time::Instant::now() + HANG;
    loop {
        let report = state.control.tick_gates().await.unwrap();
        if !starved(&report) && report.inputs.shadow_compared == 1 {
            break;
        }
        assert!(std::time::Instant::now() < until, "{report:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state.metrics.control.rollout_starved.get(), 0);
}
