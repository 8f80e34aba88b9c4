//! Logs and traces of the real binary: JSON access-log lines with the decision id, route,
//! status and latency (every response, or only errors by default); and the decision's spans
//! exported over OTLP/HTTP to a collector (a stand-in HTTP server in this test that keeps what
//! it is sent), one `decision` span carrying the id with a child per stage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tradeserve_testkit::{HANG, ServiceProcess};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

fn start(dir: &tempfile::TempDir, extra: &[(&str, String)]) -> ServiceProcess {
    let mut env = vec![
        (
            "TRADESERVE_EVENTS__AUDIT_LOG",
            dir.path().join("audit.jsonl").display().to_string(),
        ),
        (
            "TRADESERVE_CONTROL__FILE",
            dir.path().join("control.json").display().to_string(),
        ),
        ("TRADESERVE_SERVER__DRAIN_DELAY", "0s".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    ServiceProcess::start(BIN, &env)
}

fn post(url: &str, path: &str, body: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{url}{path}"))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    })
}

/// Access-log lines that arrive within `within`.
fn access_lines(server: &ServiceProcess) -> Vec<Value> {
    // A marker request, answered 404 (logged in every mode but `off`): lines are written in
    // the order the responses were, so the lines before the marker's are all the earlier ones.
    const MARKER: &str = "/access-log-marker";
    let (s, _) = post(&server.url(), MARKER, "{}");
    assert_eq!(s, 404);
    let mut out = Vec::new();
    loop {
        let v = server
            .logs
            .recv_timeout(HANG)
            .expect("the marker's access-log line");
        if v["target"] != "tradeserve::access" {
            continue;
        }
        if v["fields"]["path"] == MARKER {
            return out;
        }
        out.push(v);
    }
}

#[test]
fn access_log_lines_carry_the_decision_route_status_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[("TRADESERVE_TELEMETRY__ACCESS_LOG", "all".into())]);
    let (s, d) = post(
        &server.url(),
        "/api/v1/predict",
        r#"{"symbol":"AAPL","risk_check":false}"#,
    );
    assert_eq!(s, 200, "{d}");
    let (s, _) = post(&server.url(), "/api/v1/predict", r#"{"symbol":"NOPE"}"#);
    assert_eq!(s, 404);
    let lines = access_lines(&server);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let f = &lines[0]["fields"];
    assert_eq!(f["message"], "request");
    assert_eq!(
        (&f["method"], &f["path"], &f["status"]),
        (&"POST".into(), &"/api/v1/predict".into(), &200.into())
    );
    assert_eq!(f["decision_id"], d["decision_id"]);
    let ms = f["latency_ms"].as_f64().unwrap();
    assert!(ms > 0.0 && ms < 5_000.0, "{ms}");
    assert_eq!(lines[0]["level"], "INFO");
    // An error has no decision.
    assert_eq!(lines[1]["fields"]["status"], 404);
    assert!(
        lines[1]["fields"].get("decision_id").is_none(),
        "{}",
        lines[1]
    );

    // The default: failed requests only. A decision, approved or rejected by risk checks,
    // is in the audit log.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("restricted.toml");
    let restricted = ["AAPL", "MSFT", "NVDA", "AMZN", "SPY", "TSLA"];
    std::fs::write(
        &config,
        format!("[risk]\nrestricted_symbols = {restricted:?}\n"),
    )
    .unwrap();
    let server = ServiceProcess::start_with(
        BIN,
        &["--config", config.to_str().unwrap()],
        &[
            (
                "TRADESERVE_EVENTS__AUDIT_LOG",
                dir.path().join("audit.jsonl").display().to_string(),
            ),
            (
                "TRADESERVE_CONTROL__FILE",
                dir.path().join("control.json").display().to_string(),
            ),
        ],
    );
    // An order (a quantity) on a restricted symbol: decided without the risk check (200),
    // then rejected by it (403, with its decision).
    let order = restricted
        .iter()
        .flat_map(|s| (14..20).map(move |h| (s, h)))
        .map(|(s, h)| format!(r#"{{"symbol":"{s}","timestamp":"2025-10-20T{h}:30:00Z""#))
        .find(|body| {
            let (s, d) = post(
                &server.url(),
                "/api/v1/predict",
                &format!(r#"{body},"risk_check":false}}"#),
            );
            assert_eq!(s, 200, "{d}");
            d["recommended_quantity"].as_i64().unwrap() > 0
        })
        .expect("some order among the restricted symbols");
    let (s, d) = post(&server.url(), "/api/v1/predict", &format!("{order}}}"));
    assert_eq!(s, 403, "{d}");
    assert_eq!(d["error"]["code"], "risk_rejected");
    let (s, _) = post(&server.url(), "/api/v1/predict", "not json");
    assert_eq!(s, 400);
    let lines = access_lines(&server);
    let statuses: Vec<&Value> = lines.iter().map(|l| &l["fields"]["status"]).collect();
    assert_eq!(statuses, [&Value::from(400)]);
}

/// A stand-in collector: keeps the JSON body of every `POST /v1/traces`.
fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = Arc::clone(&got);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                post(move |body: axum::body::Bytes| async move {
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        keep.lock().push(v);
                    }
                    "{}"
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{addr}/v1/traces"), got)
}

/// One exported span: name, trace, span and parent ids, attributes as text.
type Span = (String, String, String, String, BTreeMap<String, String>);

/// Every exported span.
fn spans(batches: &[Value]) -> Vec<Span> {
    let mut out = Vec::new();
    for b in batches {
        for rs in b["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            assert_eq!(service, Some("tradeserve".into()));
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attrs = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let v = &a["value"];
                            let text = v["stringValue"]
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v.to_string());
                            (a["key"].as_str().unwrap().to_owned(), text)
                        })
                        .collect();
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                    out.push((
                        text("name"),
                        text("traceId"),
                        text("spanId"),
                        text("parentSpanId"),
                        attrs,
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn each_decision_is_exported_as_a_span_with_one_child_per_stage() {
    let (endpoint, got) = collector();
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        &dir,
        &[
            ("TRADESERVE_TELEMETRY__OTLP_ENDPOINT", endpoint),
            ("TRADESERVE_TELEMETRY__OTLP_PROTOCOL", "http/json".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    let mut ids = Vec::new();
    for symbol in ["AAPL", "MSFT", "NVDA"] {
        let (s, d) = post(
            &server.url(),
            "/api/v1/predict",
            &format!(r#"{{"symbol":"{symbol}"}}"#),
        );
        assert!(s == 200 || s == 403, "{d}");
        ids.push(d["decision_id"].as_str().unwrap().to_owned());
    }
    // A graceful stop flushes whatever the batch still holds.
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(server.child.wait().unwrap().success());
    let spans = spans(&got.lock());
    for id in &ids {
        let (_, trace, span, _, _) = spans
            .iter()
            .find(|(name, .., a)| name == "decision" && a.get("decision_id") == Some(id))
            .unwrap_or_else(|| panic!("no decision span for {id}: {spans:?}"));
        let mut children: Vec<&str> = spans
            .iter()
            .filter(|(_, t, _, parent, _)| t == trace && parent == span)
            .map(|(name, ..)| name.as_str())
            .collect();
        children.sort_unstable();
        assert_eq!(children, ["event", "features", "inference", "risk"], "{id}");
    }
}
