//! The operator lane (`server.admin_listen`), through the built binary: with the trading
//! listener full of client connections, an operator still halts, rolls back and looks on the
//! second listener, under the same keys and roles; the lane serves no decisions, has its own
//! connection cap, and is refused on a public address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpStream;

use serde_json::Value;
use tradeserve_testkit::ServiceProcess;
use tradeserve_testkit::raw_http::{closed_within, connect, exchange, read_response};
use tradeserve_testkit::service::new_api_key;

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

fn request(method: &str, path: &str, key: Option<&str>, body: &str) -> Vec<u8> {
    let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nhost: t\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request on a fresh connection: status and body.
fn call(addr: &str, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut s = connect(addr);
    let (status, _, body) = exchange(&mut s, &request(method, path, key, body));
    (status, body)
}

#[test]
fn an_operator_halts_rolls_back_and_looks_while_clients_fill_the_trading_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (trader, trader_entry) = new_api_key(BIN, "desk-1", "trader", "");
    let (operator, operator_entry) = new_api_key(BIN, "ops-1", "operator", "");
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, format!("{trader_entry}{operator_entry}")).unwrap();
    let server = ServiceProcess::start(
        BIN,
        &[
            ("TRADESERVE_AUTH__KEYS_FILE", keys.display().to_string()),
            (
                "TRADESERVE_EVENTS__AUDIT_LOG",
                dir.path().join("audit.jsonl").display().to_string(),
            ),
            (
                "TRADESERVE_CONTROL__FILE",
                dir.path().join("control.json").display().to_string(),
            ),
            ("TRADESERVE_SERVER__MAX_CONNECTIONS", "20".into()),
            ("TRADESERVE_SERVER__ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("TRADESERVE_SERVER__ADMIN_MAX_CONNECTIONS", "3".into()),
        ],
    );
    let admin = server
        .startup_logs
        .iter()
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("operator lane listening"))
        })
        .and_then(|v| v["fields"]["admin"].as_str())
        .expect("the operator lane's address in the start-up log")
        .to_owned();
    let predict = r#"{"symbol":"AAPL","risk_check":false}"#;
    assert_eq!(
        call(
            &server.addr,
            "POST",
            "/api/v1/predict",
            Some(&trader),
            predict
        )
        .0,
        200
    );
    // (Counted on the operator lane, which does not count against the trading cap.)
    let open = |name: &str| {
        let (_, metrics) = call(&admin, "GET", "/metrics", Some(&operator), "");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
            .unwrap()
    };
    tradeserve_testkit::wait_for("the first connection closed", || {
        open("tradeserve_connections_open") == 0
    });
    // Clients hold every trading connection (each has sent a request's first bytes).
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            s.write_all(b"POST /api/v1/predict HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    tradeserve_testkit::wait_for("20 connections held", || {
        open("tradeserve_connections_open") == 20
    });
    let mut refused = connect(&server.addr);
    let (status, _, body) = exchange(
        &mut refused,
        &request("GET", "/health/ready", Some(&operator), ""),
    );
    assert_eq!(status, 503, "the trading listener is full: {body}");
    assert!(body.contains("too_many_connections"), "{body}");

    // The operator lane answers: look, halt, roll back, release.
    let (status, body) = call(&admin, "GET", "/health/ready", Some(&operator), "");
    assert_eq!(status, 200, "{body}");
    let halt = r#"{"scope":{"type":"symbol","symbol":"AAPL"},"reason":"clients are flooding"}"#;
    let (status, body) = call(&admin, "POST", "/api/v1/halts", Some(&operator), halt);
    assert_eq!(status, 201, "{body}");
    let halt: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(halt["status"], "active");
    assert_eq!(halt["created"]["by"], "ops-1");
    let (status, body) = call(&admin, "POST", "/api/v1/rollback", Some(&operator), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(open("tradeserve_connections_open"), 20);
    assert_eq!(open("tradeserve_connections_refused_total"), 1);
    assert!(open("tradeserve_admin_connections_open") >= 1);

    // Same keys and roles; no decisions on this lane.
    assert_eq!(call(&admin, "GET", "/api/v1/halts", None, "").0, 401);
    assert_eq!(
        call(
            &admin,
            "POST",
            "/api/v1/halts",
            Some(&trader),
            halt.to_string().as_str()
        )
        .0,
        403
    );
    assert_eq!(
        call(&admin, "POST", "/api/v1/predict", Some(&trader), predict).0,
        404
    );

    // Its own cap: three connections served and held (each retried until the lane's earlier
    // connections are gone), the fourth refused.
    let lane: Vec<TcpStream> = (0..3)
        .map(|_| {
            tradeserve_testkit::eventually("an operator-lane connection", || {
                let mut s = connect(&admin);
                let (status, _, _) = exchange(&mut s, &request("GET", "/health/live", None, ""));
                (status == 200).then_some(s)
            })
        })
        .collect();
    let mut fourth = connect(&admin);
    let (status, _, body) = exchange(&mut fourth, &request("GET", "/health/live", None, ""));
    assert_eq!(status, 503, "{body}");
    drop(lane);

    // Once the clients let go, trading resumes, and the halt holds: AAPL is refused.
    for s in &mut held {
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    drop(held);
    assert!(closed_within(&mut refused, tradeserve_testkit::HANG));
    let released = tradeserve_testkit::eventually("a trading connection", || {
        let mut s = TcpStream::connect(&server.addr).ok()?;
        let checked = r#"{"symbol":"AAPL","timestamp":"2025-10-14T15:00:00Z"}"#;
        s.write_all(&request("POST", "/api/v1/predict", Some(&trader), checked))
            .ok()?;
        let (status, _, body) = read_response(&mut s);
        (status != 503).then_some((status, body))
    });
    assert_eq!(released.0, 403, "{}", released.1);
    assert!(released.1.contains("halted by"), "{}", released.1);
}
