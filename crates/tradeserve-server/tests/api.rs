//! API tests through the router: exact response shapes, every status code of the API
//! that applies without auth, and the audit events behind the responses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tradeserve_replay::{ModelStore, Replayer, replay_audit_log};
use tradeserve_server::config::Config;

mod common;
use common::*;
use tradeserve_testkit::HANG;

fn assert_decision_shape(d: &Value) {
    assert_eq!(
        keys(d),
        set(&[
            "decision_id",
            "symbol",
            "action",
            "confidence",
            "recommended_quantity",
            "regime_probabilities",
            "strategy_weights",
            "risk_validation",
            "metadata"
        ]),
        "{d}"
    );
    let id = uuid::Uuid::parse_str(d["decision_id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert!(["BUY", "SELL", "HOLD"].contains(&d["action"].as_str().unwrap()));
    let c = d["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&c));
    let q = d["recommended_quantity"].as_u64().unwrap();
    assert_eq!(q % 10, 0, "quantity is a multiple of the lot size");
    if d["action"] == "HOLD" {
        assert_eq!(q, 0);
    }
    let r = &d["regime_probabilities"];
    assert_eq!(keys(r), set(&["bull", "bear", "sideways", "entropy"]));
    let sum =
        r["bull"].as_f64().unwrap() + r["bear"].as_f64().unwrap() + r["sideways"].as_f64().unwrap();
    assert!(
        (sum - 1.0).abs() <= 1e-6,
        "regime probabilities sum to {sum}"
    );
    assert!((0.0..=1.0).contains(&r["entropy"].as_f64().unwrap()));
    let w = &d["strategy_weights"];
    assert_eq!(
        keys(w),
        set(&["bull_specialist", "bear_specialist", "sideways_specialist"])
    );
    let wsum: f64 = ["bull_specialist", "bear_specialist", "sideways_specialist"]
        .iter()
        .map(|k| w[k].as_f64().unwrap())
        .sum();
    assert!((wsum - 1.0).abs() <= 1e-6);
    let m = &d["metadata"];
    assert_eq!(
        keys(m),
        set(&[
            "model_version",
            "latency_ms",
            "timestamp",
            "model_versions",
            "experiment",
            "rollout",
            "features_as_of"
        ])
    );
    assert!(m["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(m["experiment"].is_null());
    assert!(m["rollout"].is_null());
    assert_eq!(
        keys(&m["model_versions"]),
        set(&[
            "regime_detector",
            "meta_controller",
            "bull_specialist",
            "bear_specialist",
            "sideways_specialist"
        ])
    );
    // The dominant specialist is the one with the largest weight.
    let dominant = ["bull_specialist", "bear_specialist", "sideways_specialist"]
        .into_iter()
        .max_by(|a, b| w[a].as_f64().unwrap().total_cmp(&w[b].as_f64().unwrap()))
        .unwrap();
    assert_eq!(
        m["model_version"],
        format!(
            "{dominant}_v{}",
            m["model_versions"][dominant].as_str().unwrap()
        )
    );
    time::OffsetDateTime::parse(
        m["timestamp"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
}

#[tokio::test]
async fn a_decision_has_exactly_the_documented_shape() {
    let h = harness();
    let (status, d) = predict(&h, r#"{"symbol":"AAPL"}"#).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_decision_shape(&d);
    assert_eq!(d["symbol"], "AAPL");
    let v = &d["risk_validation"];
    assert_eq!(keys(v), set(&["approved", "warnings", "checks"]));
    assert_eq!(v["approved"], true);
    assert_eq!(
        keys(&v["checks"]),
        set(&[
            "position_limit",
            "concentration",
            "order_notional",
            "restricted_list",
            "daily_order_count",
            "kill_switch",
            "order_quantity",
            "desk_daily_notional",
            "order_rate",
            "repeated_execution"
        ])
    );
    // The replay clock is pinned to bar 60 + 500: day 2 (390 bars a day), 171st minute.
    assert_eq!(d["metadata"]["model_versions"]["bull_specialist"], "1");
    assert_eq!(d["metadata"]["features_as_of"], "2025-10-07T17:21:00Z");
}

#[tokio::test]
async fn point_in_time_uses_the_last_bar_at_or_before_the_timestamp() {
    let h = harness();
    let (s, d) = predict(
        &h,
        r#"{"symbol":"MSFT","timestamp":"2025-10-14T15:00:30Z","risk_check":false}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["metadata"]["features_as_of"], "2025-10-14T15:00:00Z");
    assert!(d["risk_validation"].is_null());
    // Same instant → same features → same decision (apart from id and timing).
    let (_, again) = predict(
        &h,
        r#"{"symbol":"MSFT","timestamp":"2025-10-14T15:00:59Z","risk_check":false}"#,
    )
    .await;
    for k in [
        "action",
        "confidence",
        "recommended_quantity",
        "regime_probabilities",
        "strategy_weights",
    ] {
        assert_eq!(d[k], again[k], "{k}");
    }
}

#[tokio::test]
async fn strategy_override_gives_that_specialist_all_the_weight() {
    let h = harness();
    let (s, d) = predict(
        &h,
        r#"{"symbol":"NVDA","strategy_override":"bear_specialist","risk_check":false}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_decision_shape(&d);
    assert_eq!(
        d["strategy_weights"],
        json!({"bull_specialist": 0.0, "bear_specialist": 1.0, "sideways_specialist": 0.0})
    );
    assert_eq!(d["metadata"]["model_version"], "bear_specialist_v1");
}

/// A point in time at which AAPL gets a BUY or SELL with a positive quantity.
async fn trading_timestamp(h: &Harness) -> String {
    for day in 7..=17 {
        for hour in 15..=19 {
            for minute in [0, 15, 30, 45] {
                let ts = format!("2025-10-{day:02}T{hour}:{minute:02}:00Z");
                let (_, d) = predict(
                    h,
                    &format!(r#"{{"symbol":"AAPL","timestamp":"{ts}","risk_check":false}}"#),
                )
                .await;
                if d["recommended_quantity"].as_u64().unwrap_or(0) > 0 {
                    return ts;
                }
            }
        }
    }
    panic!("no trading decision in the replay data");
}

#[tokio::test]
async fn a_failed_risk_check_is_a_403_with_the_full_decision_and_an_event() {
    let h = harness_with(|c| c.risk.restricted_symbols = vec!["AAPL".into()]);
    let ts = trading_timestamp(&h).await;
    let (status, d) = predict(&h, &format!(r#"{{"symbol":"AAPL","timestamp":"{ts}"}}"#)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{d}");
    assert_eq!(d["error"]["code"], "risk_rejected");
    let mut decision = d.clone();
    decision.as_object_mut().unwrap().remove("error");
    assert_decision_shape(&decision);
    assert_eq!(d["risk_validation"]["approved"], false);
    assert_eq!(d["risk_validation"]["checks"]["restricted_list"], "fail");
    assert!(
        d["risk_validation"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("restricted")
    );

    flush(&h);
    let text = std::fs::read_to_string(&h.audit_path).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["decision_id"], d["decision_id"]);
    assert_eq!(last["approved"], false);
    assert_eq!(last["risk_checks"]["restricted_list"], false);
    assert_eq!(last["risk_checks"]["position_limit"], true);
}

#[tokio::test]
async fn positions_accumulate_until_the_limit_rejects() {
    let h = harness_with(|c| {
        c.risk.max_position_shares = 1;
        c.risk.warn_fraction = 1.0;
    });
    let ts = trading_timestamp(&h).await;
    let body = format!(r#"{{"symbol":"AAPL","timestamp":"{ts}"}}"#);
    let (status, d) = predict(&h, &body).await;
    // Any positive quantity exceeds a one-share limit.
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(d["risk_validation"]["checks"]["position_limit"], "fail");
}

#[tokio::test]
async fn every_client_error_has_its_status_and_code() {
    let h = harness();
    let cases: &[(&str, StatusCode, &str)] = &[
        ("not json", StatusCode::BAD_REQUEST, "malformed_json"),
        ("", StatusCode::BAD_REQUEST, "malformed_json"),
        ("[1]", StatusCode::BAD_REQUEST, "not_an_object"),
        (
            r#"{"symbol":"AAPL","extra":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
        ),
        (r#"{}"#, StatusCode::UNPROCESSABLE_ENTITY, "missing_field"),
        (
            r#"{"symbol":42}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
        ),
        (
            r#"{"symbol":"aapl"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_symbol",
        ),
        (
            r#"{"symbol":"AAPL","timestamp":"noon"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_timestamp",
        ),
        (
            r#"{"symbol":"AAPL","timestamp":"2999-01-01T00:00:00Z"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "timestamp_in_future",
        ),
        (
            r#"{"symbol":"AAPL","strategy_override":"yolo"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            r#"{"symbol":"AAPL","risk_check":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
        ),
        (
            r#"{"symbol":"ZZZZ"}"#,
            StatusCode::NOT_FOUND,
            "unknown_symbol",
        ),
        (
            r#"{"symbol":"AAPL","timestamp":"2020-01-01T00:00:00Z"}"#,
            StatusCode::NOT_FOUND,
            "no_features",
        ),
    ];
    for (body, status, code) in cases {
        let (s, v) = predict(&h, body).await;
        assert_eq!(s, *status, "{body} → {v}");
        assert_error(&v, code);
    }
    let (s, v) = predict(&h, r#"{"symbol":"AAPL","risk_check":"yes"}"#).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("risk_check"))
    );

    let (s, v, _) = call(&h, "GET", "/api/v1/predict", Body::empty()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v, "method_not_allowed");
    let (s, v, _) = call(&h, "GET", "/api/v1/nothing", Body::empty()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_whether_declared_or_streamed() {
    let h = harness();
    let big = format!(r#"{{"symbol":"AAPL","pad":"{}"}}"#, "x".repeat(20_000));
    let (s, v) = predict(&h, &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&v, "body_too_large");
    // No Content-Length: a streamed body is cut off at the limit.
    let chunks = futures_stream(big.into_bytes());
    let (s, v, _) = call(&h, "POST", "/api/v1/predict", Body::from_stream(chunks)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&v, "body_too_large");
}

fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = bytes
        .chunks(1000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn overload_not_ready_and_deadline() {
    // Admission control: no permits left → 429 at once.
    let h = harness();
    let permits = h.service.state.admission.available_permits();
    let _all = h
        .service
        .state
        .admission
        .acquire_many(permits as u32)
        .await
        .unwrap();
    let (s, v) = predict(&h, r#"{"symbol":"AAPL"}"#).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&v, "overloaded");

    // Draining: readiness is false, decisions still flow for requests already arriving.
    let h = harness();
    let (s, v, _) = call(&h, "GET", "/health/ready", Body::empty()).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"status": "ready"})));
    h.service.state.start_draining();
    let (s, v, _) = call(&h, "GET", "/health/ready", Body::empty()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&v, "not_ready");
    let (s, v, _) = call(&h, "GET", "/health/live", Body::empty()).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"status": "live"})));

    // No models loaded → 503 on predict and ready.
    let h = harness();
    h.service.state.control.unload();
    let (s, v) = predict(&h, r#"{"symbol":"AAPL"}"#).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&v, "not_ready");

    // A deadline no request can meet → 504, and no decision is recorded.
    let h = harness_with(|c| {
        c.server.request_deadline =
            tradeserve_core::bounded::PositiveDuration::new(Duration::from_nanos(1)).unwrap()
    });
    let (s, v) = predict(&h, r#"{"symbol":"AAPL"}"#).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert_error(&v, "deadline_exceeded");
    assert_eq!(
        h.service
            .audit_log
            .as_ref()
            .unwrap()
            .shutdown(HANG)
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn every_decision_returned_is_in_the_audit_log() {
    let h = harness();
    let mut ids = BTreeSet::new();
    for (i, symbol) in ["AAPL", "MSFT", "BRK.B", "SPY", "TSLA"]
        .iter()
        .cycle()
        .take(60)
        .enumerate()
    {
        let risk = i % 2 == 0;
        let strategy = if i % 3 == 0 {
            r#""bear_specialist""#
        } else {
            "null"
        };
        let body = format!(
            r#"{{"symbol":"{symbol}","risk_check":{risk},"strategy_override":{strategy}}}"#
        );
        let (s, d) = predict(&h, &body).await;
        assert!(s == StatusCode::OK || s == StatusCode::FORBIDDEN);
        ids.insert(d["decision_id"].as_str().unwrap().to_owned());
    }
    let _ = predict(&h, r#"{"symbol":"NOPE"}"#).await;
    assert_eq!(
        h.service
            .audit_log
            .as_ref()
            .unwrap()
            .shutdown(HANG)
            .unwrap(),
        60
    );
    let text = std::fs::read_to_string(&h.audit_path).unwrap();
    let validator = tradeserve_testkit::event_schema();
    let mut logged = BTreeSet::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&e)
            .map(|err| err.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "event does not match the published schema: {errors:?}\n{line}"
        );
        assert_eq!(e["event_type"], "trading_decision");
        assert_eq!(e["schema_version"], 1);
        assert_eq!(keys(&e["features"]).len(), 15);
        // The event reads back as the type that wrote it, and writes out the same again, but
        // for the audit log's own link to the line before.
        let read: tradeserve_core::decision::DecisionEvent = serde_json::from_str(line).unwrap();
        let mut event = e.clone();
        let link = event.as_object_mut().unwrap().remove("prev_hash").unwrap();
        assert!(link.as_str().unwrap().starts_with("sha256:"));
        assert_eq!(serde_json::to_value(&read).unwrap(), event);
        logged.insert(e["decision_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(logged, ids);
    // Forensics: every logged decision replays to exactly the same result ...
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut replayer = Replayer::new(
        ModelStore::Bundled(models.clone()),
        Config::default().sizing,
    );
    replay_audit_log(&h.audit_path, &mut replayer).unwrap();
    let report = replayer.finish();
    assert_eq!(
        (
            report.events,
            report.matched,
            report.mismatched,
            report.skipped
        ),
        (60, 60, 0, 0),
        "{report:?}"
    );
    // ... and a tampered one does not.
    let mut tampered: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let rsi = tampered["features"]["rsi_14"].as_f64().unwrap();
    tampered["features"]["rsi_14"] = json!(1.0 - rsi);
    tampered["confidence"] = json!(tampered["confidence"].as_f64().unwrap() + 1e-9);
    let mut replayer = Replayer::new(ModelStore::Bundled(models), Config::default().sizing);
    replayer.replay(tampered.to_string().as_bytes());
    let report = replayer.finish();
    assert_eq!(report.mismatched, 1);
    assert!(
        report.mismatches.iter().any(|m| m.field == "confidence"),
        "{report:?}"
    );

    // The schema is strict: a wrong enum, a missing feature or an extra field fails it.
    let mut bad: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    bad["action"] = json!("MAYBE");
    assert!(!validator.is_valid(&bad));
    let mut bad: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    bad["features"].as_object_mut().unwrap().remove("rsi_14");
    assert!(!validator.is_valid(&bad));
    let mut bad: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    bad["surprise"] = json!(1);
    assert!(!validator.is_valid(&bad));
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let h = harness();
    for _ in 0..3 {
        predict(&h, r#"{"symbol":"AAPL","risk_check":false}"#).await;
    }
    predict(&h, r#"{"symbol":"nope"}"#).await;
    let (s, _, text) = call(&h, "GET", "/metrics", Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{series} missing"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(r#"tradeserve_http_responses_total{protocol="http",route="predict",status="200"}"#),
        3.0
    );
    assert_eq!(
        value(r#"tradeserve_http_responses_total{protocol="http",route="predict",status="422"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tradeserve_request_duration_seconds_count{protocol="http",route="predict"}"#),
        4.0
    );
    assert!(text.contains(
        r#"tradeserve_request_duration_seconds_bucket{protocol="http",route="predict",le="0.0001"}"#
    ));
    assert_eq!(
        value(r#"tradeserve_stage_duration_seconds_count{stage="inference"}"#),
        3.0
    );
    let decisions: f64 = ["BUY", "SELL", "HOLD"]
        .iter()
        .map(|a| {
            value(&format!(
                r#"tradeserve_decisions_total{{action="{a}",outcome="approved"}}"#
            ))
        })
        .sum();
    assert_eq!(decisions, 3.0);
    assert_eq!(
        value(r#"tradeserve_events_enqueued_total{sink="audit_log"}"#),
        3.0
    );
    assert_eq!(value("tradeserve_ready"), 1.0);
    // The configured capacity, for the load alert (the embedded default, from BENCHMARKS).
    assert_eq!(value("tradeserve_capacity_decisions_per_second"), 25_000.0);
}

#[tokio::test]
async fn models_symbols_and_openapi() {
    let h = harness();
    let (s, v, _) = call(&h, "GET", "/api/v1/models", Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["source"], "bundled");
    let models = v["models"].as_object().unwrap();
    assert_eq!(models.len(), 5);
    for (role, m) in models {
        assert_eq!(
            keys(m),
            set(&[
                "role",
                "name",
                "version",
                "alias",
                "source",
                "sha256",
                "loaded_at",
                "backend"
            ])
        );
        assert_eq!(m["backend"], serde_json::json!({"kind": "in_process"}));
        assert_eq!(m["name"], format!("tradeserve.{role}"));
        assert_eq!(m["version"], "1");
        assert!(m["alias"].is_null());
        assert_eq!(m["sha256"].as_str().unwrap().len(), 64);
        assert!(m["source"].as_str().unwrap().starts_with("file://"));
    }
    let (s, v, _) = call(&h, "POST", "/api/v1/models/reload", Body::empty()).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"status": "unchanged", "source": "bundled"})
        )
    );
    let (_, v, _) = call(&h, "GET", "/api/v1/symbols", Body::empty()).await;
    let symbols = v["symbols"].as_array().unwrap();
    assert_eq!(symbols.len(), 24);
    assert!(symbols.iter().any(|s| s["symbol"] == "BRK.B"));

    let (s, spec, _) = call(&h, "GET", "/openapi.json", Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        paths,
        set(&[
            "/api/v1/predict",
            "/api/v1/models",
            "/api/v1/models/reload",
            "/api/v1/symbols",
            "/api/v1/bars",
            "/health/live",
            "/health/ready",
            "/metrics",
            "/api/v1/stats",
            "/dashboard",
            "/openapi.json",
            "/api/v1/experiments",
            "/api/v1/experiments/{id}",
            "/api/v1/experiments/{id}/report",
            "/api/v1/outcomes",
            "/api/v1/rollouts",
            "/api/v1/rollouts/{id}",
            "/api/v1/rollouts/{id}/promote",
            "/api/v1/rollouts/{id}/pause",
            "/api/v1/rollouts/{id}/rollback",
            "/api/v1/rollback",
            "/api/v1/halts",
            "/api/v1/halts/{id}"
        ])
    );
}

#[tokio::test]
async fn an_explained_decision_is_the_same_decision_with_attributions() {
    // An explanation takes ~4 ms in a release build, ~100 in this debug one.
    let h = harness_with(|c| {
        c.server.request_deadline = tradeserve_core::bounded::PositiveDuration::new(HANG).unwrap()
    });
    let body = |explain: bool| {
        format!(
            r#"{{"symbol":"NVDA","timestamp":"2025-10-14T15:00:00Z","risk_check":false,"explain":{explain}}}"#
        )
    };
    let (s, plain) = predict(&h, &body(false)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(plain.get("explanation").is_none());
    let (s, d) = predict(&h, &body(true)).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    // The decision is the same, field by field (ids, clocks and latency aside).
    for k in [
        "symbol",
        "action",
        "confidence",
        "recommended_quantity",
        "regime_probabilities",
        "strategy_weights",
        "risk_validation",
    ] {
        assert_eq!(d[k], plain[k], "{k}");
    }
    assert_eq!(
        d["metadata"]["model_versions"],
        plain["metadata"]["model_versions"]
    );
    let e = &d["explanation"];
    assert_eq!(keys(e), set(&["method", "output", "base_value", "values"]));
    assert_eq!((&e["method"], &e["output"]), (&json!("shap"), &d["action"]));
    let values = e["values"].as_object().unwrap();
    let names: BTreeSet<String> = tradeserve_core::explain::player_names()
        .map(str::to_owned)
        .collect();
    assert_eq!(values.keys().cloned().collect::<BTreeSet<_>>(), names);
    let total = e["base_value"].as_f64().unwrap()
        + values.values().map(|v| v.as_f64().unwrap()).sum::<f64>();
    let p = d["confidence"].as_f64().unwrap();
    assert!((total - p).abs() <= 1e-4, "{total} vs {p}");
    // Deterministic: the same request explains the same way.
    let (_, again) = predict(&h, &body(true)).await;
    assert_eq!(again["explanation"], d["explanation"]);

    // The event carries the five largest attributions.
    flush(&h);
    let text = std::fs::read_to_string(&h.audit_path).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events[0].get("explanation").is_none());
    let ev = &events[1];
    assert_eq!(ev["decision_id"], d["decision_id"]);
    let top = ev["explanation"]["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let mut largest: Vec<f64> = values.values().map(|v| v.as_f64().unwrap()).collect();
    largest.sort_by(|a, b| b.abs().total_cmp(&a.abs()));
    for (t, want) in top.iter().zip(&largest) {
        assert_eq!(t["value"].as_f64().unwrap(), *want);
        assert_eq!(
            values[t["feature"].as_str().unwrap()].as_f64().unwrap(),
            *want
        );
    }
    assert!(tradeserve_testkit::event_schema().is_valid(ev), "{ev}");
}

#[tokio::test]
async fn a_client_id_too_long_is_refused_not_ignored() {
    let h = harness();
    let body = r#"{"symbol":"AAPL","risk_check":false}"#;
    let long = "c".repeat(129);
    let (s, v) = common::call_with(
        &h,
        "POST",
        "/api/v1/predict",
        &[("x-client-id", &long)],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["field"], "X-Client-Id");
    let ok = "c".repeat(128);
    let (s, _) =
        common::call_with(&h, "POST", "/api/v1/predict", &[("x-client-id", &ok)], body).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) =
        common::call_with(&h, "POST", "/api/v1/predict", &[("x-client-id", "")], body).await;
    assert_eq!(s, StatusCode::OK);
}

/// `GET /api/v1/stats` holds what the decisions counted in `/metrics` hold, over the window;
/// `GET /dashboard` is one self-contained page that reads it.
#[tokio::test]
async fn stats_hold_the_metrics_figures_and_the_dashboard_reads_them() {
    let h = harness();
    let state = &h.service.state;
    // The sampler's first tick (the served binary runs it every second).
    state.window.push(state.metrics.sample());
    for symbol in ["AAPL", "MSFT", "NVDA", "NOPE"] {
        predict(
            &h,
            &format!(r#"{{"symbol":"{symbol}","risk_check":false}}"#),
        )
        .await;
    }
    let (s, v, _) = call(&h, "GET", "/api/v1/stats", Body::empty()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let w = &v["window"];
    assert_eq!(
        (w["requests"].as_u64(), w["decisions"].as_u64()),
        (Some(4), Some(3)),
        "{v}"
    );
    assert_eq!(w["statuses"], json!({"200": 3, "404": 1}));
    let actions = &w["actions"];
    let sum = ["BUY", "SELL", "HOLD"]
        .iter()
        .map(|a| actions[a].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(sum, 3);
    assert_eq!(w["error_rate"], 0.0);
    // Four requests in (0, 1 s]... each percentile within the histogram's range.
    let p99 = w["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 <= 1000.0, "{p99}");
    assert_eq!(v["ready"], true);
    assert_eq!(v["capacity_per_second"], 25_000.0);
    assert_eq!(v["models"]["source"], "bundled");
    assert_eq!(v["models"]["versions"]["regime_detector"], "1");
    assert_eq!(
        v["control"],
        json!({"experiment": null, "rollout": null, "kill_switch": false})
    );
    assert_eq!(v["events"]["kafka"], Value::Null);
    assert_eq!(v["events"]["audit_log"]["unavailable"], false);

    let (s, _, page) = call(&h, "GET", "/dashboard", Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("fetch(\"/api/v1/stats\""),
        "the page reads the stats"
    );
    // Self-contained: nothing loaded from elsewhere.
    for external in ["http://", "https://", "<link", "src=\""] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
}
