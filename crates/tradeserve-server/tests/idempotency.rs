//! Idempotent decisions through the router (the per-replica store): a request repeated with
//! the same `client_order_id` (or `Idempotency-Key`) is answered with the first decision —
//! same `decision_id`, `"repeat": true`, `Idempotent-Replayed: true` — with no second booking
//! and no second event; the same key with another request is 409; a request that got no
//! decision frees its key; bad keys are 422 naming the field; rejected decisions repeat as 403.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Harness, assert_error, audit_events, flush, harness_with, predict};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tradeserve_server::app::router;

/// A risk-checked request body that trades shares (with `"client_order_id": "{id}"` put in).
async fn order_body(h: &Harness) -> String {
    for symbol in ["AAPL", "MSFT", "NVDA", "AMZN", "SPY", "TSLA"] {
        for hour in 14..20 {
            let body = format!(
                r#"{{"symbol":"{symbol}","timestamp":"2025-10-20T{hour}:30:00Z","risk_check":false}}"#
            );
            let (_, d) = predict(h, &body).await;
            if d["action"] != "HOLD" && d["recommended_quantity"].as_u64().unwrap() > 0 {
                return body.replace(
                    r#""risk_check":false"#,
                    r#""risk_check":true,"client_order_id":"{id}""#,
                );
            }
        }
    }
    panic!("no order found");
}

/// POST /api/v1/predict with headers: status, body, whether `Idempotent-Replayed` was set.
async fn send(h: &Harness, headers: &[(&str, &str)], body: &str) -> (StatusCode, Value, bool) {
    let mut req = Request::builder().method("POST").uri("/api/v1/predict");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router(std::sync::Arc::clone(&h.service.state))
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let replayed = res.headers().get("idempotent-replayed").is_some();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    tradeserve_testkit::openapi::assert_documented(
        "POST",
        "/api/v1/predict",
        status.as_u16(),
        &bytes,
    );
    (status, serde_json::from_slice(&bytes).unwrap(), replayed)
}

fn limited(max_daily_orders: u64) -> impl FnOnce(&mut tradeserve_server::config::Config) {
    move |c| {
        c.risk.max_daily_orders = max_daily_orders;
        c.risk.max_position_shares = u64::MAX / 4;
        c.risk.max_position_notional = 1e18;
        c.risk.max_concentration = 1.0;
        c.risk.portfolio_capital = 1e20;
        c.risk.max_order_notional = 1e18;
    }
}

#[tokio::test]
async fn a_repeated_order_is_answered_once_booked_once_recorded_once() {
    // Two orders a day for the symbol: a repeat that booked would leave no room for "B".
    let h = harness_with(limited(2));
    let body = order_body(&h).await;
    let a = body.replace("{id}", "ORD-A");
    let (s, first, replayed) = send(&h, &[], &a).await;
    assert_eq!((s, replayed), (StatusCode::OK, false), "{first}");
    assert!(first.get("repeat").is_none());
    for _ in 0..3 {
        let (s, again, replayed) = send(&h, &[], &a).await;
        assert_eq!((s, replayed), (StatusCode::OK, true), "{again}");
        assert_eq!(again["repeat"], true);
        let mut same = again.clone();
        same.as_object_mut().unwrap().remove("repeat");
        assert_eq!(same, first, "the first decision, unchanged");
    }
    // The header is the same key.
    let (s, again, _) = send(&h, &[("idempotency-key", "ORD-A")], &a).await;
    assert_eq!(
        (s, &again["decision_id"]),
        (StatusCode::OK, &first["decision_id"])
    );
    let (s, b, _) = send(&h, &[], &body.replace("{id}", "ORD-B")).await;
    assert_eq!(s, StatusCode::OK, "the second order of the day: {b}");
    let (s, c, _) = send(&h, &[], &body.replace("{id}", "ORD-C")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the third: {c}");
    assert_eq!(c["risk_validation"]["checks"]["daily_order_count"], "fail");
    // A rejected decision repeats as the same 403.
    let (s, c2, replayed) = send(&h, &[], &body.replace("{id}", "ORD-C")).await;
    assert_eq!((s, replayed), (StatusCode::FORBIDDEN, true));
    assert_eq!(c2["decision_id"], c["decision_id"]);
    assert_eq!(
        (c2["repeat"].clone(), c2["error"]["code"].clone()),
        (Value::Bool(true), Value::from("risk_rejected"))
    );
    let (_, _, metrics) = common::call(&h, "GET", "/metrics", Body::empty()).await;
    assert!(
        metrics.contains("tradeserve_decisions_repeated_total 5"),
        "{metrics}"
    );

    // One event per decision, carrying its key, held to the published schema.
    flush(&h);
    let schema = tradeserve_testkit::event_schema();
    let keyed: Vec<(String, String)> = audit_events(&h)
        .into_iter()
        .filter(|e| e["event_type"] == "trading_decision" && !e["client_order_id"].is_null())
        .map(|e| {
            assert!(schema.is_valid(&e), "{e}");
            (
                e["client_order_id"].as_str().unwrap().to_owned(),
                e["decision_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [("ORD-A", &first), ("ORD-B", &b), ("ORD-C", &c)]
        .iter()
        .map(|(k, d)| {
            (
                (*k).to_owned(),
                d["decision_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(keyed, want);
}

#[tokio::test]
async fn another_request_under_a_used_key_is_refused_and_a_failed_one_frees_its_key() {
    let h = harness_with(limited(1000));
    let body = order_body(&h).await;
    let (s, _, _) = send(&h, &[], &body.replace("{id}", "K1")).await;
    assert_eq!(s, StatusCode::OK);
    let other = body
        .replace("{id}", "K1")
        .replace(r#""risk_check":true"#, r#""risk_check":false"#);
    let (s, v, _) = send(&h, &[], &other).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_error(&v, "idempotency_conflict");
    // No decision (unknown symbol): the key is free for the real request.
    let (s, _, _) = send(&h, &[("idempotency-key", "K2")], r#"{"symbol":"NOPE"}"#).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v, replayed) = send(&h, &[], &body.replace("{id}", "K2")).await;
    assert_eq!((s, replayed), (StatusCode::OK, false), "{v}");
}

#[tokio::test]
async fn bad_keys_are_422_naming_the_field() {
    let h = harness_with(limited(1000));
    let body = order_body(&h).await;
    for (headers, id, field) in [
        (vec![], "-starts-with-a-dash", "client_order_id"),
        (vec![], "has space", "client_order_id"),
        (vec![("idempotency-key", "a/b")], "ok-1", "Idempotency-Key"),
        (vec![("idempotency-key", "ok-2")], "ok-1", "client_order_id"),
    ] {
        let (s, v, _) = send(&h, &headers, &body.replace("{id}", id)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{id}: {v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    let long = "x".repeat(65);
    let (s, v, _) = send(&h, &[], &body.replace("{id}", &long)).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("client_order_id"))
    );
}

#[tokio::test]
async fn a_keyed_request_is_refused_while_the_shared_key_store_is_unreachable() {
    // The keys follow the ledger into Redis; none listens on port 1.
    let h = harness_with(|c| {
        c.ledger.store = tradeserve_server::ledger::LedgerStore::Redis;
        c.ledger.redis_url = "redis://127.0.0.1:1/0".into();
        c.ledger.timeout = tradeserve_core::bounded::PositiveDuration::millis(200);
    });
    let unkeyed = r#"{"symbol":"AAPL","risk_check":false}"#;
    assert_eq!(send(&h, &[], unkeyed).await.0, StatusCode::OK);
    let keyed = r#"{"symbol":"AAPL","risk_check":false,"client_order_id":"K-1"}"#;
    let (s, v, _) = send(&h, &[], keyed).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_error(&v, "idempotency_unavailable");
    // Never decided without the check: no event carries the key.
    flush(&h);
    assert!(
        audit_events(&h)
            .iter()
            .all(|e| e["client_order_id"].is_null())
    );
}
