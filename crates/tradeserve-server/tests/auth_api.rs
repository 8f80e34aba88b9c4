//! API keys through the router: 401 for a missing or unknown key (with `WWW-Authenticate`),
//! 403 for a key without the route's role, 429 `rate_limited` with `Retry-After` over a key's
//! quota; every role's reach; the key id — never the key, and never an `X-Actor` header — as
//! the actor of control changes and decision events; `/health/live` always public,
//! `/health/ready` and `/metrics` public unless `protect_ops`; keys from a secrets file; a
//! non-loopback address without keys refused at start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::{Harness, assert_error, audit_events, flush, harness_with};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tradeserve_auth::key::generate;
use tradeserve_auth::{ApiRole, AuthConfig, KeyConfig};
use tradeserve_server::app::router;
use tradeserve_server::config::{Config, ConfigError};

struct Keys {
    viewer: String,
    trader: String,
    operator: String,
    limited: String,
    config: Vec<KeyConfig>,
}

fn key(id: &str, roles: &[ApiRole], rate: Option<u32>, burst: Option<u32>) -> (String, KeyConfig) {
    let (key, hash) = generate(id).unwrap();
    let entry = KeyConfig {
        id: id.into(),
        hash: hash.to_string(),
        roles: roles.to_vec(),
        rate_per_minute: rate,
        burst,
        daily_notional: None,
        orders_per_second: None,
    };
    (key, entry)
}

fn keys() -> Keys {
    let (viewer, v) = key("view-1", &[ApiRole::Viewer], None, None);
    let (trader, t) = key("desk-1", &[ApiRole::Trader], None, None);
    let (operator, o) = key("ops-1", &[ApiRole::Operator], None, None);
    let (limited, l) = key("slow-1", &[ApiRole::Trader], Some(1), Some(2));
    Keys {
        viewer,
        trader,
        operator,
        limited,
        config: vec![v, t, o, l],
    }
}

fn secured(k: &Keys, protect_ops: bool) -> Harness {
    let keys = k.config.clone();
    harness_with(move |c| {
        c.auth.keys = keys;
        c.auth.protect_ops = protect_ops;
    })
}

/// One request: status, JSON body and headers (the body held to openapi.json).
async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    key: Option<&str>,
    extra: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value, HeaderMap) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    let res = router(Arc::clone(&h.service.state))
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    tradeserve_testkit::openapi::assert_documented(method, path, status.as_u16(), &bytes);
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v, headers)
}

const PREDICT: &str = r#"{"symbol":"AAPL","risk_check":false}"#;

#[tokio::test]
async fn a_missing_or_unknown_key_is_401_in_the_error_shape() {
    let k = keys();
    let h = secured(&k, false);
    let (_, other_hash) = generate("desk-1").unwrap();
    let forged = format!("desk-1.{}", "0".repeat(64));
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing API key: send Authorization: Bearer <key>"),
        (Some(forged), "unknown API key"),
        (Some("nobody.abc".into()), "unknown API key"),
        (Some("no-dot-at-all".into()), "unknown API key"),
        (Some(other_hash.to_string()), "unknown API key"),
        // The trader's key with one character changed.
        (
            Some(format!("{}x", &k.trader[..k.trader.len() - 1])),
            "unknown API key",
        ),
    ];
    for (presented, message) in cases {
        let (s, v, headers) = send(
            &h,
            "POST",
            "/api/v1/predict",
            presented.as_deref(),
            &[],
            PREDICT,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{presented:?}: {v}");
        assert_eq!(
            v,
            json!({"error": {"code": "unauthorized", "message": message}}),
            "{presented:?}"
        );
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    // Another scheme is no key at all.
    let (s, _, _) = send(
        &h,
        "GET",
        "/api/v1/models",
        None,
        &[("authorization", &format!("Basic {}", k.viewer))],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Case of the scheme does not matter.
    let (s, _, _) = send(
        &h,
        "GET",
        "/api/v1/models",
        None,
        &[("authorization", &format!("bearer {}", k.viewer))],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, metrics) = common::call(&h, "GET", "/metrics", Body::empty()).await;
    for line in [
        "tradeserve_auth_refused_total{reason=\"missing\"} 2",
        "tradeserve_auth_refused_total{reason=\"unknown\"} 5",
        "tradeserve_auth_refused_total{reason=\"forbidden\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in /metrics");
    }
    assert!(!metrics.contains(&k.trader) && !metrics.contains(&k.trader[7..]));
}

#[tokio::test]
async fn each_role_reaches_its_endpoints_and_no_others() {
    let k = keys();
    let h = secured(&k, false);
    let reads = [
        "/api/v1/models",
        "/api/v1/symbols",
        "/api/v1/experiments",
        "/api/v1/rollouts",
        "/api/v1/stats",
        "/openapi.json",
    ];
    for key in [&k.viewer, &k.trader, &k.operator] {
        for path in reads {
            let (s, v, _) = send(&h, "GET", path, Some(key), &[], "").await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
        }
    }
    // Decisions: trader only.
    let (s, v, _) = send(&h, "POST", "/api/v1/predict", Some(&k.trader), &[], PREDICT).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (key, id) in [(&k.viewer, "view-1"), (&k.operator, "ops-1")] {
        let (s, v, _) = send(&h, "POST", "/api/v1/predict", Some(key), &[], PREDICT).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(
            v,
            json!({"error": {"code": "forbidden",
                "message": format!("key {id} lacks the role trader that this endpoint needs")}})
        );
    }
    // Changes: operator only.
    for (method, path, body) in [
        ("POST", "/api/v1/rollback", r#"{"reason":"drill"}"#),
        ("POST", "/api/v1/models/reload", ""),
        ("POST", "/api/v1/experiments", "{}"),
        ("PUT", "/api/v1/experiments/x", "{}"),
        ("DELETE", "/api/v1/experiments/x", ""),
        ("POST", "/api/v1/rollouts", "{}"),
        ("POST", "/api/v1/rollouts/x/promote", ""),
        ("POST", "/api/v1/bars", r#"{"bars":[]}"#),
    ] {
        for key in [&k.viewer, &k.trader] {
            let (s, v, _) = send(&h, method, path, Some(key), &[], body).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {v}");
            assert_error(&v, "forbidden");
        }
    }
    let (s, v, _) = send(
        &h,
        "POST",
        "/api/v1/rollback",
        Some(&k.operator),
        &[],
        r#"{"reason":"drill"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // An unknown route is 404 for everyone, a known one with a wrong method 405.
    let (s, _, _) = send(&h, "GET", "/api/v1/nothing", None, &[], "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_key_id_is_the_actor_and_the_key_is_written_nowhere() {
    let k = keys();
    let h = secured(&k, false);
    // An X-Actor header cannot speak for a key.
    let (s, v, _) = send(
        &h,
        "POST",
        "/api/v1/rollback",
        Some(&k.operator),
        &[("x-actor", "mallory")],
        r#"{"reason":"drill"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["kill_switch"]["actor"], "ops-1");
    let (s, d, _) = send(
        &h,
        "POST",
        "/api/v1/predict",
        Some(&k.trader),
        &[("x-client-id", "c-7")],
        PREDICT,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    flush(&h);
    let events = audit_events(&h);
    let control: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "control_change")
        .collect();
    assert_eq!(control.len(), 1);
    assert_eq!(control[0]["actor"], "ops-1");
    let decision = events
        .iter()
        .find(|e| e["decision_id"] == d["decision_id"])
        .unwrap();
    assert_eq!(
        (&decision["actor"], &decision["client_id"]),
        (&json!("desk-1"), &json!("c-7"))
    );
    assert!(tradeserve_testkit::event_schema().is_valid(decision));
    let log = std::fs::read_to_string(&h.audit_path).unwrap();
    for secret in [&k.trader, &k.operator] {
        assert!(!log.contains(secret.as_str()));
        assert!(!log.contains(secret.split_once('.').unwrap().1));
    }
}

#[tokio::test]
async fn health_and_metrics_are_public_unless_protected_and_liveness_always_is() {
    let k = keys();
    let open = secured(&k, false);
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let (s, _, _) = send(&open, "GET", path, None, &[], "").await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let closed = secured(&k, true);
    let (s, _, _) = send(&closed, "GET", "/health/live", None, &[], "").await;
    assert_eq!(s, StatusCode::OK);
    for path in ["/health/ready", "/metrics"] {
        let (s, v, _) = send(&closed, "GET", path, None, &[], "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_error(&v, "unauthorized");
        let (s, _, _) = send(&closed, "GET", path, Some(&k.viewer), &[], "").await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_key_over_its_quota_is_429_with_retry_after() {
    let k = keys();
    let h = secured(&k, false);
    // One a minute, burst two: two pass, the third waits about a minute.
    for _ in 0..2 {
        let (s, v, _) = send(
            &h,
            "POST",
            "/api/v1/predict",
            Some(&k.limited),
            &[],
            PREDICT,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v, headers) = send(
        &h,
        "POST",
        "/api/v1/predict",
        Some(&k.limited),
        &[],
        PREDICT,
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_error(&v, "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("key slow-1 is over its quota of 1 requests a minute; retry in "),
        "{v}"
    );
    // Other keys are not held back by it.
    let (s, _, _) = send(&h, "POST", "/api/v1/predict", Some(&k.trader), &[], PREDICT).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, metrics) = common::call(&h, "GET", "/metrics", Body::empty()).await;
    for line in [
        "tradeserve_auth_refused_total{reason=\"rate_limited\"} 1",
        "tradeserve_rate_limited_total{key=\"slow-1\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in /metrics");
    }
}

#[test]
fn keys_come_from_a_secrets_file_and_bad_ones_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, entry) = key("file-1", &[ApiRole::Trader], Some(500), None);
    let file = dir.path().join("keys.toml");
    let text = tradeserve_auth::config::keys_toml(std::slice::from_ref(&entry), "keys").unwrap();
    std::fs::write(&file, &text).unwrap();
    let auth = AuthConfig {
        keys_file: Some(file.clone()),
        ..AuthConfig::default()
    };
    assert_eq!(auth.all_keys().unwrap(), vec![entry.clone()]);
    auth.validate().unwrap();

    let refused = |edit: &dyn Fn(&mut Config)| -> String {
        let mut c = Config::default();
        edit(&mut c);
        match c.validate() {
            Err(ConfigError::Invalid(m)) => m.0,
            other => panic!("{other:?}"),
        }
    };
    std::fs::write(&file, "").unwrap();
    let m = refused(&|c| c.auth.keys_file = Some(file.clone()));
    assert!(m.contains("has no [[keys]]"), "{m}");
    let m = refused(&|c| {
        let mut bad = entry.clone();
        bad.hash = "plaintext-key".into();
        c.auth.keys = vec![bad];
    });
    assert!(m.starts_with("auth.keys \"file-1\": a key hash is"), "{m}");
    let m = refused(&|c| c.auth.keys = vec![entry.clone(), entry.clone()]);
    assert!(m.contains("used twice"), "{m}");
    let m = refused(&|c| {
        let mut none = entry.clone();
        none.roles.clear();
        c.auth.keys = vec![none];
    });
    assert!(m.contains("at least one role"), "{m}");

    // Reachable from other machines: keys, or an explicit insecure flag.
    let m = refused(&|c| c.server.listen = "0.0.0.0:8080".into());
    assert!(m.contains("no API key is configured"), "{m}");
    let m = refused(&|c| c.server.listen = "[::]:8080".into());
    assert!(m.contains("auth.allow_insecure"), "{m}");
    let mut c = Config::default();
    c.server.listen = "0.0.0.0:8080".into();
    c.auth.allow_insecure = true;
    c.validate().unwrap();
    c.auth.allow_insecure = false;
    c.auth.keys = vec![entry];
    c.validate().unwrap();
}
