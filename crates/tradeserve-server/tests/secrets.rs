//! Secrets never leave the process: a service run with an API key, a Kafka SASL password and a
//! Redis password (the broker and Redis unreachable, so every error path that could quote them
//! runs) is driven through good and bad requests; its logs (debug level, start-up included),
//! `/metrics`, `/health/ready`, every response body, the audit log and the Kafka write-ahead
//! log are searched for each secret. A configuration error on a URL with a password does not
//! quote it either.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use tradeserve_auth::key::generate;
use tradeserve_testkit::{HANG, ServiceProcess};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
const KAFKA_PASSWORD: &str = "kafka-pass-7f3a9c1e";
const REDIS_PASSWORD: &str = "redis-pass-b2d84e60";

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn no_secret_appears_in_logs_metrics_events_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (key, hash) = generate("desk-1").unwrap();
    let secret_part = key.split_once('.').unwrap().1.to_owned();
    let config = dir.path().join("secrets.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[events]
sink = "both"
audit_log = "{audit}"

[events.kafka]
brokers = "127.0.0.1:{kafka}"
spool_dir = "{spool}"
flush_timeout = "1s"

[events.kafka.client]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "desk"
"sasl.password" = "{KAFKA_PASSWORD}"

[ledger]
store = "redis"
redis_url = "redis://:{REDIS_PASSWORD}@127.0.0.1:{redis}/0"
timeout = "200ms"

[control]
file = "{control}"

[[auth.keys]]
id = "desk-1"
hash = "{hash}"
roles = ["trader", "operator"]
"#,
            audit = dir.path().join("audit.jsonl").display(),
            spool = dir.path().join("spool").display(),
            control = dir.path().join("control.json").display(),
            kafka = closed_port(),
            redis = closed_port(),
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let server = ServiceProcess::start_with(
        BIN,
        &["--config", &config_arg],
        &[("RUST_LOG", "debug".to_owned())],
    );
    let auth = format!("Authorization: Bearer {key}\r\n");
    let mut seen = Vec::new();
    let no_risk = r#"{"symbol":"AAPL","risk_check":false}"#;
    // An order (BUY/SELL of some shares) needs the risk ledger: find one.
    let order = (14..20)
        .flat_map(|h| ["AAPL", "MSFT", "NVDA", "SPY"].map(|s| (s, h)))
        .map(|(s, h)| {
            format!(r#"{{"symbol":"{s}","timestamp":"2025-10-20T{h}:30:00Z","risk_check":false}}"#)
        })
        .find(|body| {
            let answer = http(&server.addr, "POST", "/api/v1/predict", &auth, body);
            let json = answer.split_once("\r\n\r\n").unwrap().1;
            let d: serde_json::Value = serde_json::from_str(json).unwrap();
            d["action"] != "HOLD" && d["recommended_quantity"].as_u64().unwrap() > 0
        })
        .unwrap()
        .replace(r#""risk_check":false"#, r#""risk_check":true"#);
    let order = order.as_str();
    for (method, path, headers, body) in [
        ("POST", "/api/v1/predict", auth.as_str(), no_risk),
        // The risk check needs Redis, which is not there: 503 risk_unavailable.
        ("POST", "/api/v1/predict", auth.as_str(), order),
        ("POST", "/api/v1/predict", "", no_risk),
        // A wrong key that contains the real secret must not be echoed back.
        (
            "POST",
            "/api/v1/predict",
            &format!("Authorization: Bearer desk-1.{secret_part}x\r\n"),
            no_risk,
        ),
        ("POST", "/api/v1/predict", auth.as_str(), "{not json"),
        (
            "POST",
            "/api/v1/rollback",
            auth.as_str(),
            r#"{"reason":"drill"}"#,
        ),
        ("GET", "/health/ready", "", ""),
        ("GET", "/metrics", "", ""),
        ("GET", "/api/v1/models", auth.as_str(), ""),
    ] {
        seen.push(http(&server.addr, method, path, headers, body));
    }
    assert!(seen[0].starts_with("HTTP/1.1 200"), "{}", seen[0]);
    assert!(seen[1].starts_with("HTTP/1.1 503"), "{}", seen[1]);
    assert!(seen[1].contains("risk_unavailable"), "{}", seen[1]);
    assert!(seen[2].starts_with("HTTP/1.1 401"), "{}", seen[2]);
    assert!(seen[3].starts_with("HTTP/1.1 401"), "{}", seen[3]);
    // Let the Kafka sink try (and fail) to deliver, so its errors are logged too.
    std::thread::sleep(Duration::from_secs(3));
    let mut logs: Vec<String> = server.startup_logs.iter().map(|l| l.to_string()).collect();
    logs.extend(server.logs.try_iter().map(|l| l.to_string()));
    drop(server);
    assert!(
        logs.iter().any(|l| l.contains("Redis")),
        "the Redis failure was not logged: the test would not see a leak there"
    );
    let mut files = String::new();
    for entry in walk(dir.path()) {
        if entry != config {
            files.push_str(&String::from_utf8_lossy(&std::fs::read(&entry).unwrap()));
        }
    }
    assert!(files.contains("trading_decision"), "no events were written");
    let everything = [logs.join("\n"), seen.join("\n"), files];
    for (what, text) in ["logs", "responses", "files (audit log, WAL, spool)"]
        .iter()
        .zip(&everything)
    {
        for secret in [key.as_str(), &secret_part, KAFKA_PASSWORD, REDIS_PASSWORD] {
            assert!(!text.contains(secret), "{what} contain a secret");
        }
    }

    // A configuration error on a URL with a password does not quote the password.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("[ledger]\nstore = \"redis\"\nredis_url = \"redis://:{REDIS_PASSWORD}@127.0.0.1:notaport/0\"\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ledger.redis_url"), "{stderr}");
    assert!(!stderr.contains(REDIS_PASSWORD), "{stderr}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
