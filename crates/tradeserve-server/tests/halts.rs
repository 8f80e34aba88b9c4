//! Trading halts through the router (`/api/v1/halts`, the embedded file store): each scope —
//! everything, a symbol, a desk (API key), a model version — withholds exactly the orders it
//! covers (403, `kill_switch` fails naming the halt), while HOLDs and decisions without a
//! risk check are answered as before; releasing restores trading; two operators when
//! configured; 404/409/422 in the error shape; a halt survives a restart; every change is a
//! control event with its actor (held to the published schema); `/api/v1/stats` and
//! `/metrics` show the halts in force.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{
    Harness, assert_error, audit_events, call_with, flush, harness, harness_with, predict,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tradeserve_auth::key::generate;
use tradeserve_auth::{ApiRole, KeyConfig};
use tradeserve_server::app::router;

/// Requests (one per symbol, risk-checked) on which the bundled models BUY or SELL shares.
async fn orders(h: &Harness) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for symbol in ["AAPL", "MSFT", "NVDA", "AMZN", "SPY", "TSLA"] {
        for hour in 14..20 {
            let body = format!(
                r#"{{"symbol":"{symbol}","timestamp":"2025-10-20T{hour}:30:00Z","risk_check":false}}"#
            );
            let (s, d) = predict(h, &body).await;
            assert_eq!(s, StatusCode::OK, "{d}");
            if d["action"] != "HOLD" && d["recommended_quantity"].as_u64().unwrap() > 0 {
                found.push((symbol.to_owned(), body.replace("false", "true")));
                break;
            }
        }
    }
    assert!(found.len() >= 2, "two symbols that trade: {found:?}");
    found
}

/// Limits out of reach: only halts refuse.
fn roomy(c: &mut tradeserve_server::config::Config) {
    c.risk.max_position_shares = u64::MAX / 4;
    c.risk.max_position_notional = 1e18;
    c.risk.max_concentration = 1.0;
    c.risk.portfolio_capital = 1e20;
    c.risk.max_order_notional = 1e18;
    c.risk.max_daily_orders = u64::MAX / 4;
}

async fn halt(h: &Harness, actor: &str, body: Value) -> (StatusCode, Value) {
    call_with(
        h,
        "POST",
        "/api/v1/halts",
        &[("x-actor", actor), ("content-type", "application/json")],
        &body.to_string(),
    )
    .await
}

async fn release(h: &Harness, actor: &str, id: &str) -> (StatusCode, Value) {
    call_with(
        h,
        "DELETE",
        &format!("/api/v1/halts/{id}"),
        &[("x-actor", actor)],
        r#"{"reason":"checked with the desk"}"#,
    )
    .await
}

/// The order is withheld by halt `id`: 403, `kill_switch` fails, the warning names it.
fn withheld(s: StatusCode, d: &Value, id: &str) {
    assert_eq!(s, StatusCode::FORBIDDEN, "{d}");
    assert_eq!(d["error"]["code"], "risk_rejected", "{d}");
    assert_eq!(d["risk_validation"]["checks"]["kill_switch"], "fail", "{d}");
    let warnings = d["risk_validation"]["warnings"].to_string();
    assert!(
        warnings.contains(&format!("kill_switch: halted by {id}")),
        "{d}"
    );
}

#[tokio::test]
async fn a_symbol_halt_withholds_that_symbols_orders_until_released() {
    let h = harness_with(roomy);
    let o = orders(&h).await;
    let ((halted_symbol, halted), (_, other)) = (&o[0], &o[1]);
    let (s, v) = halt(
        &h,
        "alice",
        json!({"scope": {"type": "symbol", "symbol": halted_symbol}, "reason": "news pending"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["halt_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("halt-"), "{v}");
    assert_eq!(v["status"], "active");
    assert_eq!(v["created"]["by"], "alice");
    assert_eq!(
        v["scope"],
        json!({"type": "symbol", "symbol": halted_symbol})
    );

    let (s, d) = predict(&h, halted).await;
    withheld(s, &d, &id);
    // Outside the scope, and decisions that are not orders, answer as before.
    assert_eq!(predict(&h, other).await.0, StatusCode::OK);
    let unchecked = halted.replace(r#""risk_check":true"#, r#""risk_check":false"#);
    assert_eq!(predict(&h, &unchecked).await.0, StatusCode::OK);

    let (s, list) = call_with(&h, "GET", "/api/v1/halts", &[], "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["active"], 1);
    assert_eq!(list["halts"][0]["halt_id"], id.as_str());
    let (_, stats, _) = common::call(&h, "GET", "/api/v1/stats", Body::empty()).await;
    assert_eq!(stats["halts"][0]["halt_id"], id.as_str());
    let (_, _, metrics) = common::call(&h, "GET", "/metrics", Body::empty()).await;
    assert!(
        metrics.contains("tradeserve_halts_active{scope=\"symbol\"} 1"),
        "{metrics}"
    );

    let (s, v) = release(&h, "bob", &id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "released");
    assert_eq!(v["released"]["by"], "bob");
    assert_eq!(v["released"]["reason"], "checked with the desk");
    assert_eq!(predict(&h, halted).await.0, StatusCode::OK);
    let (_, _, metrics) = common::call(&h, "GET", "/metrics", Body::empty()).await;
    assert!(
        metrics.contains("tradeserve_halts_active{scope=\"symbol\"} 0"),
        "{metrics}"
    );
    let (s, v) = release(&h, "bob", &id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_error(&v, "conflict");

    // Each change is a control event with its actor, held to the published schema.
    flush(&h);
    let schema = tradeserve_testkit::control_event_schema();
    let changes: Vec<Value> = audit_events(&h)
        .into_iter()
        .filter(|e| e["event_type"] == "control_change" && e["subject"] == "halt")
        .collect();
    let seen: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|e| {
            assert!(schema.is_valid(e), "{e}");
            assert_eq!(e["subject_id"], id.as_str());
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("created", "alice", "news pending"),
            ("released", "bob", "checked with the desk")
        ]
    );
}

#[tokio::test]
async fn halts_of_everything_and_of_a_model_version_cover_what_they_name() {
    let h = harness_with(roomy);
    let o = orders(&h).await;
    let (_, order) = &o[0];
    let (s, v) = halt(
        &h,
        "ops",
        json!({"scope": {"type": "all"}, "reason": "exchange outage"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let all = v["halt_id"].as_str().unwrap().to_owned();
    for (_, body) in &o {
        let (s, d) = predict(&h, body).await;
        withheld(s, &d, &all);
    }
    assert_eq!(release(&h, "ops", &all).await.0, StatusCode::OK);

    // The champion's regime detector version: every decision uses it.
    let (_, models, _) = common::call(&h, "GET", "/api/v1/models", Body::empty()).await;
    let serving = models.to_string();
    let version = ["1", "2", "3"]
        .into_iter()
        .find(|v| serving.contains(&format!("\"version\":\"{v}\"")))
        .unwrap();
    let scope = |v: &str| json!({"type": "model_version", "role": "regime_detector", "version": v});
    let (s, v) = halt(
        &h,
        "ops",
        json!({"scope": scope("999"), "reason": "not serving"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(predict(&h, order).await.0, StatusCode::OK);
    let (s, v) = halt(
        &h,
        "ops",
        json!({"scope": scope(version), "reason": "drift"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, d) = predict(&h, order).await;
    withheld(s, &d, v["halt_id"].as_str().unwrap());
}

#[tokio::test]
async fn a_desk_halt_withholds_only_that_api_keys_orders() {
    let entry = |id: &str, role: ApiRole| {
        let (key, hash) = generate(id).unwrap();
        let config = KeyConfig {
            id: id.into(),
            hash: hash.to_string(),
            roles: vec![role],
            rate_per_minute: None,
            burst: None,
            daily_notional: None,
            orders_per_second: None,
        };
        (key, config)
    };
    let (desk1, c1) = entry("desk-1", ApiRole::Trader);
    let (desk2, c2) = entry("desk-2", ApiRole::Trader);
    let (ops, c3) = entry("ops-1", ApiRole::Operator);
    let h = harness_with(move |c| {
        roomy(c);
        c.auth.keys = vec![c1, c2, c3];
    });
    let send = |key: &str, method: &str, path: &str, body: String| {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::from(body))
            .unwrap();
        let app = router(std::sync::Arc::clone(&h.service.state));
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let order = r#"{"symbol":"AAPL","timestamp":"2025-10-20T14:30:00Z","risk_check":false}"#;
    let mut body = None;
    for symbol in ["AAPL", "MSFT", "NVDA", "AMZN", "SPY", "TSLA"] {
        let b = order.replace("AAPL", symbol);
        let (_, d) = send(&desk1, "POST", "/api/v1/predict", b.clone()).await;
        if d["action"] != "HOLD" && d["recommended_quantity"].as_u64().unwrap() > 0 {
            body = Some(b.replace("false", "true"));
            break;
        }
    }
    let body = body.expect("an order");
    let spec = json!({"scope": {"type": "desk", "key_id": "desk-1"}, "reason": "desk over its loss limit"});
    // A trader cannot halt; an operator can, and is its actor.
    let (s, _) = send(&desk2, "POST", "/api/v1/halts", spec.to_string()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = send(&ops, "POST", "/api/v1/halts", spec.to_string()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["created"]["by"], "ops-1");
    let (s, d) = send(&desk1, "POST", "/api/v1/predict", body.clone()).await;
    withheld(s, &d, v["halt_id"].as_str().unwrap());
    let (s, d) = send(&desk2, "POST", "/api/v1/predict", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{d}");
}

#[tokio::test]
async fn two_operators_release_a_halt_when_configured() {
    let h = harness_with(|c| {
        roomy(c);
        c.control.halt_release_approvals = 2;
    });
    let o = orders(&h).await;
    let (_, order) = &o[0];
    let (_, v) = halt(
        &h,
        "alice",
        json!({"scope": {"type": "all"}, "reason": "drill"}),
    )
    .await;
    let id = v["halt_id"].as_str().unwrap().to_owned();
    let (s, v) = release(&h, "alice", &id).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "release_requested");
    assert_eq!(v["release_requested"]["by"], "alice");
    // Still in force; the same operator cannot confirm.
    let (s, d) = predict(&h, order).await;
    withheld(s, &d, &id);
    let (s, v) = release(&h, "alice", &id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a second, different operator"),
        "{v}"
    );
    let (s, v) = release(&h, "bob", &id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["released"]["by"].as_str()),
        (Some("released"), Some("bob"))
    );
    assert_eq!(predict(&h, order).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_halt_requests_get_clear_errors() {
    let h = harness();
    for (body, field) in [
        (
            json!({"scope": {"type": "symbol", "symbol": "aapl"}, "reason": "x"}),
            "scope",
        ),
        (json!({"scope": {"type": "all"}, "reason": "  "}), "reason"),
        (json!({"scope": {"type": "all"}}), "reason"),
        (
            json!({"scope": {"type": "planet"}, "reason": "x"}),
            "scope.type",
        ),
        (
            json!({"scope": {"type": "all"}, "reason": "x", "extra": 1}),
            "extra",
        ),
    ] {
        let (s, v) = halt(&h, "ops", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    let (s, v) = release(&h, "ops", "halt-nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_error(&v, "not_found");
}

#[tokio::test]
async fn a_halt_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("control.json");
    let at = file.clone();
    let first = harness_with(move |c| {
        roomy(c);
        c.control.file = at;
    });
    let o = orders(&first).await;
    let (_, v) = halt(
        &first,
        "ops",
        json!({"scope": {"type": "all"}, "reason": "overnight"}),
    )
    .await;
    let id = v["halt_id"].as_str().unwrap().to_owned();
    drop(first);
    let again = harness_with(move |c| {
        roomy(c);
        c.control.file = file;
    });
    // What a start does before serving: read the stored control state.
    again.service.state.control.refresh().await.unwrap();
    let (s, d) = predict(&again, &o[0].1).await;
    withheld(s, &d, &id);
}
