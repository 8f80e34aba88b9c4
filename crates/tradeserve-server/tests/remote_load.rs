//! The specialists on real model servers, under 200 decisions/s of open-loop load on the
//! running binary, for each backend — KServe's Open Inference Protocol (`kserve_v2`), TF
//! Serving's REST API as KServe's v1 protocol speaks it (`tfserving`: no TF Serving binary is
//! installable here), and TorchServe 0.12 (`torchserve`):
//! - a rollout to v2 of the three specialists, swapped to 100% under load with zero failed
//!   requests (on TorchServe, TradeServe registers the v2 archives through the management API
//!   while the load runs);
//! - `kill -9` of the model server under load: every failure is a counted 503
//!   `backend_unavailable`, no response comes later than the deadline, and decisions resume
//!   after the server is restarted, TradeServe untouched (TorchServe's lost registrations are
//!   restored by TradeServe's steward).
//!
//! Timings go to stderr for `docs/BENCHMARKS.md`; the assertions hold the targets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tradeserve_loadgen::Report;
use tradeserve_testkit::{HANG, KserveServer, ServiceProcess, TorchServeServer, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
/// A rate every machine of the kind sustains with a debug-build service, a model server and
/// the load generator on two cores, while TorchServe starts the candidate's workers (at 500/s
/// a slower machine queued for seconds then, and the deadline answered 504s).
const RATE: f64 = 200.0;
/// The request deadline of these services: generous, as the property is that an outage is
/// answered 503 and nothing comes later than the deadline, whatever the machine's speed.
const DEADLINE: Duration = Duration::from_secs(5);
/// What the load generator's own queueing may add to a response's time on the two cores it
/// shares with a debug-build service and a model server.
const CLIENT_ALLOWANCE_MS: f64 = 500.0;

mod load_common;
use load_common::{Api, assert_no_failures, quick_gates, serial, stop_load};

fn models() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
        .canonicalize()
        .unwrap()
}

/// A model server the test can kill and restart on the same address.
enum Server {
    Kserve(KserveServer),
    Torch {
        server: TorchServeServer,
        ports: [u16; 3],
        store: tempfile::TempDir,
    },
}

impl Server {
    fn start(kind: &str) -> Server {
        match kind {
            "torchserve" => {
                Server::torch([0; 3].map(|_| free_port()), tempfile::tempdir().unwrap())
            }
            _ => Server::Kserve(KserveServer::start(&models())),
        }
    }

    /// TorchServe on `ports` (inference, management, metrics) with `store` as its model store.
    fn torch(ports: [u16; 3], store: tempfile::TempDir) -> Server {
        let server = TorchServeServer::start_with(ports[0], ports[1], ports[2], Some(store.path()));
        Server::Torch {
            server,
            ports,
            store,
        }
    }

    /// SIGKILL (TorchServe: Java and every worker).
    fn kill(&mut self) {
        match self {
            Server::Kserve(k) => k.kill(),
            Server::Torch { server, .. } => server.kill(),
        }
    }

    /// Start again on the same ports (TorchServe: with nothing registered).
    fn restart(self) -> Server {
        match self {
            Server::Kserve(k) => {
                let port = k.port();
                drop(k);
                Server::Kserve(KserveServer::start_on(&models(), port))
            }
            Server::Torch {
                server,
                ports,
                store,
            } => {
                drop(server);
                Server::torch(ports, store)
            }
        }
    }

    /// The service's settings for the three specialists on this server as `kind`.
    fn envs(&self, kind: &str, dir: &Path) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (
                "TRADESERVE_EVENTS__AUDIT_LOG",
                dir.join("audit.jsonl").display().to_string(),
            ),
            (
                "TRADESERVE_CONTROL__FILE",
                dir.join("control.json").display().to_string(),
            ),
            ("TRADESERVE_CONTROL__GATE_INTERVAL", "200ms".into()),
            ("TRADESERVE_MODELS__DIR", models().display().to_string()),
            ("TRADESERVE_SERVER__REQUEST_DEADLINE", "5s".into()),
            (
                "TRADESERVE_MODELS__REMOTE__CIRCUIT_OPEN_FOR",
                "200ms".into(),
            ),
        ];
        for key in [
            "TRADESERVE_MODELS__BACKENDS__BULL_SPECIALIST",
            "TRADESERVE_MODELS__BACKENDS__BEAR_SPECIALIST",
            "TRADESERVE_MODELS__BACKENDS__SIDEWAYS_SPECIALIST",
        ] {
            v.push((key, kind.to_owned()));
        }
        match self {
            Server::Kserve(k) => {
                let section = match kind {
                    "kserve_v2" => "KSERVE_V2",
                    _ => "TFSERVING",
                };
                let key = |k: &str| -> &'static str {
                    Box::leak(format!("TRADESERVE_MODELS__{section}__{k}").into_boxed_str())
                };
                v.push((key("URL"), k.url()));
                v.push((key("MODEL"), "{role}-{version}".into()));
                v.push((key("VERSIONED"), "false".into()));
            }
            Server::Torch { server, store, .. } => {
                let archiver = TorchServeServer::archiver().display().to_string();
                v.extend([
                    (
                        "TRADESERVE_MODELS__TORCHSERVE__INFERENCE_URL",
                        server.inference_url(),
                    ),
                    (
                        "TRADESERVE_MODELS__TORCHSERVE__MANAGEMENT_URL",
                        server.management_url(),
                    ),
                    (
                        "TRADESERVE_MODELS__TORCHSERVE__MODEL_STORE",
                        store.path().display().to_string(),
                    ),
                    ("TRADESERVE_MODELS__TORCHSERVE__ARCHIVER", archiver),
                    ("TRADESERVE_MODELS__REMOTE__STATUS_INTERVAL", "500ms".into()),
                ]);
            }
        }
        v
    }
}

/// Every failure a 503 `backend_unavailable` (the load generator keeps statuses, the body's
/// code is checked on the service's counter), none later than the deadline.
fn assert_outage_answered(report: &Report) -> u64 {
    let unavailable = report.statuses.get("503").copied().unwrap_or(0);
    let other: u64 = report
        .statuses
        .iter()
        .filter(|(s, _)| !matches!(s.as_str(), "200" | "403" | "503"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(other, 0, "statuses {:?}", report.statuses);
    assert_eq!(report.responses, report.requests, "{report:?}");
    // The server's own figure (`metadata.latency_ms`) exists only on decisions, not on the
    // 503s; the client's covers every response. It counts from the scheduled send, so it
    // includes the client's own queueing on the two shared cores: bounded by the deadline plus
    // that allowance.
    let decided = report.server_latency_ms.max;
    assert!(
        decided <= DEADLINE.as_secs_f64() * 1e3 + 50.0,
        "a decision after the deadline: {decided} ms"
    );
    let slowest = report.latency_ms.max;
    assert!(
        slowest <= DEADLINE.as_secs_f64() * 1e3 + CLIENT_ALLOWANCE_MS,
        "a response {slowest} ms after its scheduled send (deadline {DEADLINE:?})"
    );
    unavailable
}

fn under_load(kind: &str) {
    let _serial = serial();
    let server = Server::start(kind);
    let dir = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(BIN, &server.envs(kind, dir.path()));
    let api = Api::new(&service.url());
    api.decide();

    // The swap: a rollout of v2 of the three specialists, shadow → completed, under load.
    let loader = api.load_until_stopped(RATE);
    std::thread::sleep(Duration::from_millis(500));
    let spec = json!({"rollout_id": "ro-remote", "candidate": {"bull_specialist": "2",
        "bear_specialist": "2", "sideways_specialist": "2"}, "gates": quick_gates(),
        "bucketing": "decision"});
    let started = Instant::now();
    let (s, r) = api.call("POST", "/api/v1/rollouts", spec);
    assert_eq!(s, 201, "{r}");
    let created = started.elapsed();
    api.wait_stage("ro-remote", "completed");
    let report = stop_load(loader);
    eprintln!(
        "{kind}: rollout created in {:.1} s (candidate provided and verified), completed in {:.1} s; \
         {} requests at {RATE}/s: statuses {:?}, client p50 {:.1} p99 {:.1} max {:.1} ms",
        created.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        report.requests,
        report.statuses,
        report.latency_ms.p50,
        report.latency_ms.p99,
        report.latency_ms.max
    );
    assert_no_failures(&report);
    let (_, m) = api.call("GET", "/api/v1/models", Value::Null);
    for role in ["bull_specialist", "bear_specialist", "sideways_specialist"] {
        assert_eq!(m["models"][role]["version"], "2", "{m}");
        assert_eq!(m["models"][role]["backend"]["kind"], kind, "{m}");
    }

    // kill -9 under load, restart 2 s later: counted 503s, never past the deadline, recovery.
    // 8 s of load: the kill 2 s in, the restart 2 s later.
    let loader = api.load_in_background(RATE, (RATE * 8.0) as u64);
    std::thread::sleep(Duration::from_secs(2));
    let mut server = server;
    server.kill();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let _server = server.restart();
    let report = loader.join().unwrap();
    let unavailable = assert_outage_answered(&report);
    assert!(
        unavailable > 0,
        "the outage was not seen: {:?}",
        report.statuses
    );
    let until = Instant::now() + HANG;
    loop {
        let (s, _) = api.call(
            "POST",
            "/api/v1/predict",
            json!({"symbol": "AAPL", "risk_check": false}),
        );
        if s == 200 {
            break;
        }
        assert!(Instant::now() < until, "decisions did not resume");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{kind}: kill -9 under {RATE}/s: statuses {:?}, client p99 {:.1} max {:.1} ms, server max \
         {:.1} ms (deadline {} ms); deciding again when checked after the load, {:.1} s after the kill",
        report.statuses,
        report.latency_ms.p99,
        report.latency_ms.max,
        report.server_latency_ms.max,
        DEADLINE.as_millis(),
        killed.elapsed().as_secs_f64()
    );
}

#[test]
#[ignore = "load test on real model servers (scripts/test.sh runs it)"]
fn kserve_v2_swaps_and_survives_a_kill_under_load() {
    under_load("kserve_v2");
}

#[test]
#[ignore = "load test on real model servers (scripts/test.sh runs it)"]
fn tf_serving_client_on_kserve_v1_swaps_and_survives_a_kill_under_load() {
    under_load("tfserving");
}

#[test]
#[ignore = "load test on real model servers (scripts/test.sh runs it)"]
fn torchserve_swaps_and_survives_a_kill_under_load() {
    under_load("torchserve");
}
