//! Process tests through the built binary: start on port 0, serve real HTTP, drain on
//! SIGTERM with every returned decision in the audit log; refuse a bad config at start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tradeserve_loadgen::{LoadConfig, run};
use tradeserve_testkit::{HANG, ServiceProcess, eventually, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

fn start(dir: &tempfile::TempDir) -> ServiceProcess {
    ServiceProcess::start(
        BIN,
        &[
            (
                "TRADESERVE_EVENTS__AUDIT_LOG",
                dir.path().join("audit.jsonl").display().to_string(),
            ),
            (
                "TRADESERVE_CONTROL__FILE",
                dir.path().join("control.json").display().to_string(),
            ),
            ("TRADESERVE_SERVER__DRAIN_DELAY", "2s".into()),
        ],
    )
}

#[test]
fn sigterm_drains_in_flight_requests_and_flushes_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir);
    let pid = Pid::from_raw(server.child.id() as i32);
    // SIGTERM once 100 decisions are in the audit log (a count, not a time: how fast a debug
    // build decides depends on the machine), well before the load's 2,000.
    let audit = dir.path().join("audit.jsonl");
    let stopper = std::thread::spawn(move || {
        wait_for("100 decisions logged", || {
            std::fs::read_to_string(&audit).is_ok_and(|t| t.lines().count() >= 100)
        });
        kill(pid, Signal::SIGTERM).unwrap();
    });
    // A load balancer's view: readiness, and a prediction, every 20 ms on fresh connections,
    // until the listener is closed.
    let addr = server.addr.clone();
    let poller = std::thread::spawn(move || {
        let mut seen: Vec<(Option<u16>, Option<u16>)> = Vec::new();
        let until = Instant::now() + HANG;
        while seen.last().is_none_or(|(ready, _)| ready.is_some()) {
            assert!(
                Instant::now() < until,
                "the listener never closed: {seen:?}"
            );
            let ready = probe(&addr, b"GET /health/ready HTTP/1.1\r\nhost: t\r\n\r\n");
            let body = r#"{"symbol":"AAPL"}"#;
            let predict = format!(
                "POST /api/v1/predict HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            seen.push((ready, probe(&addr, predict.as_bytes())));
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(run(LoadConfig {
            url: format!("http://{}", server.addr),
            rate: 500.0,
            requests: 2000,
            warmup: 0,
            connections: 16,
            symbols: vec!["AAPL".into(), "MSFT".into(), "BRK.B".into()],
            extra: None,
            timeout: HANG,
            path: "/api/v1/predict".into(),
            headers: Vec::new(),
            order_ids: None,
            grpc: None,
        }))
        .unwrap();
    stopper.join().unwrap();
    let seen = poller.join().unwrap();
    // Readiness said 503 while predictions were still answered (the drain delay), and only
    // then did the listener close.
    let first_503 = seen
        .iter()
        .position(|(ready, _)| *ready == Some(503))
        .expect("readiness never answered 503 during the drain");
    assert!(
        seen[..first_503].iter().all(|(r, _)| *r == Some(200)),
        "{seen:?}"
    );
    let served_while_draining = seen[first_503..]
        .iter()
        .take_while(|(_, p)| p.is_some())
        .filter(|(_, p)| *p == Some(200))
        .count();
    assert!(served_while_draining >= 5, "{seen:?}");
    let status = eventually("an exit after SIGTERM", || server.child.try_wait().unwrap());
    assert!(status.success(), "exit status {status}");

    // Load ran on both sides of the signal: decisions before, refused connections after.
    assert!(
        report.decisions > 100,
        "decisions before the signal: {report:?}"
    );
    assert!(
        report.decisions < 2000,
        "the server stopped mid-run: {report:?}"
    );
    let server_errors: u64 = report
        .statuses
        .iter()
        .filter(|(s, _)| s.starts_with('5'))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(server_errors, 0, "{report:?}");

    let logged = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    let polled = seen.iter().filter(|(_, p)| *p == Some(200)).count() as u64;
    assert_eq!(
        logged,
        report.decisions + polled,
        "every decision a client received is in the audit log"
    );
    let flushed: Vec<Value> = server
        .logs
        .try_iter()
        .filter(|v| v["fields"]["message"] == "audit log flushed; stopped")
        .collect();
    assert_eq!(flushed.len(), 1);
    assert_eq!(
        flushed[0]["fields"]["events_written"].as_u64(),
        Some(logged)
    );

    // `tradeserve replay` reproduces every logged decision from its event.
    let out = tradeserve_testkit::run_ok(
        Command::new(BIN)
            .args(["replay", "--audit-log"])
            .arg(dir.path().join("audit.jsonl")),
    );
    let replay: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replay["events"].as_u64(), Some(logged));
    assert_eq!(replay["matched"].as_u64(), Some(logged));
    assert_eq!(replay["mismatched"].as_u64(), Some(0));

    // A torn last line (a crash mid-write) is reported with where it is, not hidden.
    let path = dir.path().join("audit.jsonl");
    let whole = std::fs::metadata(&path).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, br#"{"schema_version":1,"event_type":"trading_dec"#).unwrap();
    let out = Command::new(BIN)
        .args(["replay", "--audit-log"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a skipped event fails the replay");
    let replay: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replay["matched"].as_u64(), Some(logged));
    assert_eq!(replay["skipped"].as_u64(), Some(1));
    let reason = replay["skipped_reasons"][0].as_str().unwrap();
    assert!(
        reason.contains(&format!(":{} (byte {whole})", logged + 1))
            && reason.contains("torn last line"),
        "{reason}"
    );
}

/// The status of one request on a fresh connection; `None` when it could not connect.
fn probe(addr: &str, request: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(HANG)).ok()?;
    s.write_all(request).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn a_bad_config_fails_at_start_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[risk]\nmax_concentration = 3.0\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_concentration"), "{stderr}");

    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());

    // A file the service could not write is refused by check-config too, naming the key.
    let unwritable = dir.path().join("unwritable.toml");
    std::fs::write(
        &unwritable,
        format!(
            "[events]\naudit_log = {:?}\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    for cmd in ["check-config", "serve"] {
        let out = Command::new(BIN)
            .args([cmd, "--config"])
            .arg(&unwritable)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("events.audit_log"), "{cmd}: {stderr}");
    }

    // Data that is not where the config says: the key, where it looked, how to set it — once.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("TRADESERVE_MODELS__DIR", "nowhere")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TRADESERVE_MODELS__DIR"), "{stderr}");
    assert_eq!(stderr.matches("not found").count(), 1, "{stderr}");
    assert!(
        stderr.contains(&dir.path().join("nowhere").display().to_string()),
        "{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[server]\nlisten = \"127.0.0.1:9\"\n[models.versions]\nbull_specialist = \"2\"\n",
    )
    .unwrap();
    let out = tradeserve_testkit::run_ok(
        Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&good),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration OK"));
    assert!(stdout.contains("tradeserve.bull_specialist v2"), "{stdout}");
}

/// A key made by `tradeserve auth new-key` opens the service it is configured on, over real
/// HTTP; a non-loopback address without keys is refused at start.
#[test]
fn a_new_key_from_the_cli_opens_the_service_and_an_open_public_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = tradeserve_testkit::run_ok(Command::new(BIN).args([
        "auth",
        "new-key",
        "--id",
        "desk-9",
        "--role",
        "trader,viewer",
        "--rate-per-minute",
        "600",
        "--json",
    ]));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("desk-9.") && key.len() == 7 + 64, "{key}");
    assert_eq!(made["roles"], serde_json::json!(["trader", "viewer"]));
    // The text form prints a [[auth.keys]] entry to paste; as [[keys]] it is a keys file.
    let text = tradeserve_testkit::run_ok(
        Command::new(BIN).args(["auth", "new-key", "--id", "desk-9", "--role", "trader"]),
    );
    let text = String::from_utf8(text.stdout).unwrap();
    let entry = &text[text.find("[[auth.keys]]").unwrap()..];
    assert!(entry.contains("id = \"desk-9\"") && entry.contains("roles = [\"trader\"]"));
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(
        &keys_file,
        format!(
            "[[keys]]\nid = \"desk-9\"\nhash = {:?}\nroles = [\"trader\", \"viewer\"]\nrate_per_minute = 600\n",
            made["hash"].as_str().unwrap()
        ),
    )
    .unwrap();
    let server = ServiceProcess::start(
        BIN,
        &[
            (
                "TRADESERVE_AUTH__KEYS_FILE",
                keys_file.display().to_string(),
            ),
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
    let body = r#"{"symbol":"AAPL","risk_check":false}"#;
    let request = |auth: &str| {
        format!(
            "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    assert_eq!(probe(&server.addr, request("").as_bytes()), Some(401));
    assert_eq!(
        probe(
            &server.addr,
            request(&format!("Authorization: Bearer {key}\r\n")).as_bytes()
        ),
        Some(200)
    );
    drop(server);

    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no API key is configured")
            && stderr.contains("TRADESERVE_AUTH__ALLOW_INSECURE"),
        "{stderr}"
    );
}

/// The audit log of a real run (killed with SIGKILL, restarted) verifies with `tradeserve audit
/// verify`; an edited symbol makes it exit 1 naming the line after the edit.
#[test]
fn the_audit_log_of_a_killed_and_restarted_service_verifies_and_an_edit_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let body = r#"{"symbol":"AAPL","risk_check":false}"#;
    let request = format!(
        "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..2 {
        let server = start(&dir);
        for _ in 0..10 {
            assert_eq!(probe(&server.addr, request.as_bytes()), Some(200));
        }
        drop(server); // SIGKILL: no clean shutdown
    }
    let verify = |path: &std::path::Path| {
        Command::new(BIN)
            .args(["audit", "verify", "--audit-log"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = verify(&audit);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(
        (&report["lines"], &report["begins"], &report["problems"]),
        (
            &serde_json::json!(20),
            &serde_json::json!("genesis"),
            &serde_json::json!([])
        )
    );
    // Line 7 now says MSFT where it said AAPL.
    let mut lines: Vec<String> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines[6].contains("\"AAPL\""));
    lines[6] = lines[6].replacen("\"AAPL\"", "\"MSFT\"", 1);
    std::fs::write(&audit, lines.join("\n") + "\n").unwrap();
    let out = verify(&audit);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["problems"][0]["line"], 8, "{report}");
    assert_eq!(report["problems"][0]["kind"], "broken_link");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 problem(s) in 20 lines"), "{stderr}");
}
