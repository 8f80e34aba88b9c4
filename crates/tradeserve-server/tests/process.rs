//! Process tests through the built binary: start on port 0, serve real HTTP, drain on
//! SIGTERM with every returned decision in the audit log; refuse a bad config at start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tradeserve_loadgen::{LoadConfig, run};
use tradeserve_testkit::ServiceProcess;

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
        ],
    )
}

#[test]
fn sigterm_drains_in_flight_requests_and_flushes_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir);
    let pid = Pid::from_raw(server.child.id() as i32);
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        kill(pid, Signal::SIGTERM).unwrap();
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
            timeout: Duration::from_secs(5),
            path: "/api/v1/predict".into(),
        }))
        .unwrap();
    stopper.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
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
    assert_eq!(
        logged, report.decisions,
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
