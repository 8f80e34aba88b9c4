//! Helpers shared by the router-level test files: a service on the embedded defaults with
//! its files in a temporary folder, one-shot requests (every response held to `openapi.json`),
//! and shape assertions.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tradeserve_features::ReplayClock;
use tradeserve_server::app::router;
use tradeserve_server::config::Config;
use tradeserve_server::serve::{Service, build_with_clock};

pub struct Harness {
    pub service: Service,
    pub _dir: tempfile::TempDir,
    pub audit_path: std::path::PathBuf,
}

pub fn harness_with(edit: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.events.audit_log = dir.path().join("audit.jsonl");
    config.control.file = dir.path().join("control.json");
    // A deadline that only catches a hang: the 40 ms default is about a release build on a
    // quiet machine; a test about the deadline sets its own.
    config.server.request_deadline =
        tradeserve_core::bounded::PositiveDuration::new(tradeserve_testkit::HANG).unwrap();
    edit(&mut config);
    let audit_path = config.events.audit_log.clone();
    let service = build_with_clock(&config, ReplayClock::Fixed(500)).unwrap();
    Harness {
        service,
        _dir: dir,
        audit_path,
    }
}

pub fn harness() -> Harness {
    harness_with(|_| {})
}

pub async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    body: Body,
) -> (StatusCode, Value, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(body)
        .unwrap();
    let res = router(Arc::clone(&h.service.state))
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    tradeserve_testkit::openapi::assert_documented(method, path, status.as_u16(), &bytes);
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let want = match (status, path) {
        (StatusCode::OK, "/metrics") => "text/plain",
        (StatusCode::OK, "/dashboard") => "text/html",
        _ => "application/json",
    };
    assert!(
        ctype.starts_with(want),
        "{path}: content-type {ctype:?} for {text}"
    );
    (status, json, text)
}

pub async fn predict(h: &Harness, body: &str) -> (StatusCode, Value) {
    let (s, v, _) = call(h, "POST", "/api/v1/predict", Body::from(body.to_owned())).await;
    (s, v)
}

pub fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

pub fn assert_error(v: &Value, code: &str) {
    assert_eq!(keys(v), set(&["error"]), "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

/// A request with headers.
pub async fn call_with(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router(Arc::clone(&h.service.state))
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    tradeserve_testkit::openapi::assert_documented(method, path, status.as_u16(), &bytes);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Stop the shadow thread (it emits its events first), then flush and stop the audit log.
pub fn flush(h: &Harness) {
    h.service.shadow.shutdown();
    h.service
        .audit_log
        .as_ref()
        .unwrap()
        .shutdown(tradeserve_testkit::HANG)
        .unwrap();
}

/// Every event of the audit log, after the service flushed it.
pub fn audit_events(h: &Harness) -> Vec<Value> {
    std::fs::read_to_string(&h.audit_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
