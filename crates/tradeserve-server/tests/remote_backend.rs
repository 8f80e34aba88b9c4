//! The specialists served by a real Open Inference Protocol server — KServe's Python model
//! server running `serving/kserve/onnx_server.py`, started on a free loopback port and stopped
//! by its process group — through the `tradeserve` binary: the same decisions as in process,
//! the backend shown by `GET /api/v1/models`, a killed server answered with counted 503s
//! naming the role (never later than the deadline) and recovery when it is back, without
//! restarting TradeServe; and a server whose model does not answer its golden vectors stops
//! the start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tradeserve_testkit::{HANG, KserveServer, ServiceProcess, TorchServeServer};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
const SPECIALISTS: [&str; 3] = ["BULL_SPECIALIST", "BEAR_SPECIALIST", "SIDEWAYS_SPECIALIST"];

fn models() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
        .canonicalize()
        .unwrap()
}

/// The service's files in `dir`; the specialists on `kserve` when given, through its Open
/// Inference Protocol (`kind` = `kserve_v2`) or its TF Serving-style v1 protocol (`tfserving`).
fn envs(dir: &Path, kserve: Option<&str>) -> Vec<(&'static str, String)> {
    envs_for(dir, kserve, "kserve_v2")
}

fn envs_for(dir: &Path, kserve: Option<&str>, kind: &str) -> Vec<(&'static str, String)> {
    let mut envs = vec![
        (
            "TRADESERVE_EVENTS__AUDIT_LOG",
            dir.join("audit.jsonl").display().to_string(),
        ),
        (
            "TRADESERVE_CONTROL__FILE",
            dir.join("control.json").display().to_string(),
        ),
        // Generous: an explanation through remote roles takes 0.3-0.5 s in this debug build on
        // a slow machine. A dead server is told apart from a slow one by the status (503
        // `backend_unavailable`, not 504), not by a time.
        ("TRADESERVE_SERVER__REQUEST_DEADLINE", "30s".into()),
        ("TRADESERVE_MODELS__DIR", models().display().to_string()),
    ];
    if let Some(url) = kserve {
        let [url_key, model_key, versioned_key] = match kind {
            "kserve_v2" | "kserve_v2_grpc" => [
                "TRADESERVE_MODELS__KSERVE_V2__URL",
                "TRADESERVE_MODELS__KSERVE_V2__MODEL",
                "TRADESERVE_MODELS__KSERVE_V2__VERSIONED",
            ],
            _ => [
                "TRADESERVE_MODELS__TFSERVING__URL",
                "TRADESERVE_MODELS__TFSERVING__MODEL",
                "TRADESERVE_MODELS__TFSERVING__VERSIONED",
            ],
        };
        envs.push((url_key, url.to_owned()));
        envs.push((model_key, "{role}-{version}".into()));
        envs.push((versioned_key, "false".into()));
        envs.push(("TRADESERVE_MODELS__REMOTE__STATUS_INTERVAL", "200ms".into()));
        for role in SPECIALISTS {
            let key = match role {
                "BULL_SPECIALIST" => "TRADESERVE_MODELS__BACKENDS__BULL_SPECIALIST",
                "BEAR_SPECIALIST" => "TRADESERVE_MODELS__BACKENDS__BEAR_SPECIALIST",
                _ => "TRADESERVE_MODELS__BACKENDS__SIDEWAYS_SPECIALIST",
            };
            envs.push((key, kind.trim_end_matches("_grpc").to_owned()));
        }
    }
    envs
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let res = client
        .post(format!("{url}/api/v1/predict"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap();
    tradeserve_testkit::openapi::assert_documented("POST", "/api/v1/predict", status, &bytes);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `GET path` of `service`, held to the API document.
async fn get(client: &reqwest::Client, service: &ServiceProcess, path: &str) -> Value {
    let res = client
        .get(format!("{}{path}", service.url()))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap();
    tradeserve_testkit::openapi::assert_documented("GET", path, status, &bytes);
    serde_json::from_slice(&bytes).unwrap()
}

/// Requests at fixed timestamps (the same features in every process), no risk check.
fn requests() -> Vec<Value> {
    let mut out = Vec::new();
    for minute in 0..10 {
        for symbol in ["AAPL", "MSFT", "NVDA", "SPY"] {
            let ts = format!("2025-10-14T15:{minute:02}:00Z");
            out.push(json!({"symbol": symbol, "timestamp": ts, "risk_check": false}));
        }
    }
    out.push(
        json!({"symbol": "AAPL", "timestamp": "2025-10-14T15:00:00Z",
                    "risk_check": false, "strategy_override": "bear_specialist"}),
    );
    out
}

/// With `models.remote.fallback = "in_process"` a dead model server costs no decision: the
/// in-process copies answer (counted), the circuits open (shown by `/health/ready` and the
/// gauge), and when the server is back a probe closes them and the remote path serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
async fn with_the_in_process_fallback_an_outage_fails_no_request() {
    let mut kserve = KserveServer::start(&models());
    let dir = tempfile::tempdir().unwrap();
    let mut envs = envs(dir.path(), Some(&kserve.url()));
    envs.push(("TRADESERVE_MODELS__REMOTE__FALLBACK", "in_process".into()));
    envs.push(("TRADESERVE_MODELS__REMOTE__CIRCUIT_FAILURES", "3".into()));
    envs.push((
        "TRADESERVE_MODELS__REMOTE__CIRCUIT_OPEN_FOR",
        "300ms".into(),
    ));
    let service = ServiceProcess::start(BIN, &envs);
    let client = reqwest::Client::new();
    let metric = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    let scrape = || async {
        let r = client
            .get(format!("{}/metrics", service.url()))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    };
    let ready = || async {
        let r = client
            .get(format!("{}/health/ready", service.url()))
            .send()
            .await
            .unwrap();
        let (status, bytes) = (r.status().as_u16(), r.bytes().await.unwrap());
        tradeserve_testkit::openapi::assert_documented("GET", "/health/ready", status, &bytes);
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    let bull = r#"tradeserve_backend_fallbacks_total{role="bull_specialist"}"#;
    let open = r#"tradeserve_backend_circuit_open{role="bull_specialist"}"#;
    for body in requests().iter().take(4) {
        assert_eq!(post(&client, &service.url(), body).await.0, 200);
    }
    assert_eq!(metric(&scrape().await, bull), 0.0);
    assert_eq!(
        ready().await["backends"]["bull_specialist"]["state"]["circuit"],
        "closed"
    );

    let port = kserve.port();
    kserve.kill();
    let n = 12;
    for body in requests().iter().take(n) {
        let (s, v) = post(&client, &service.url(), body).await;
        assert_eq!(s, 200, "{v}");
    }
    let text = scrape().await;
    assert_eq!(
        metric(&text, bull),
        n as f64,
        "every decision fell back once"
    );
    assert_eq!(metric(&text, open), 1.0);
    let r = ready().await;
    assert_eq!(r["status"], "ready");
    assert_eq!(
        r["backends"]["bull_specialist"]["state"]["circuit"], "open",
        "{r}"
    );

    // The server comes back: after the open period a probe closes the circuit.
    let _kserve = KserveServer::start_on(&models(), port);
    let until = Instant::now() + HANG;
    loop {
        post(&client, &service.url(), &requests()[0]).await;
        let r = ready().await;
        if r["backends"]["bull_specialist"]["state"]["circuit"] == "closed" {
            break;
        }
        assert!(Instant::now() < until, "the circuit never closed: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = metric(&scrape().await, bull);
    for body in requests().iter().take(4) {
        assert_eq!(post(&client, &service.url(), body).await.0, 200);
    }
    assert_eq!(
        metric(&scrape().await, bull),
        before,
        "served remotely again"
    );
    assert_eq!(metric(&scrape().await, open), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
async fn specialists_on_an_open_inference_protocol_server_decide_as_in_process() {
    same_decisions_and_outage("kserve_v2").await;
}

/// TF Serving's REST predict API, spoken by KServe's v1 protocol (not TF Serving itself,
/// which does not install on this machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
async fn specialists_on_kserve_v1_through_the_tf_serving_client_decide_as_in_process() {
    same_decisions_and_outage("tfserving").await;
}

/// The Open Inference Protocol's gRPC binding (`models.kserve_v2.protocol = "grpc"`), to
/// KServe's gRPC server: one HTTP/2 connection, the rows as a raw FP32 tensor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
async fn specialists_over_the_open_inference_protocols_grpc_decide_as_in_process() {
    same_decisions_and_outage("kserve_v2_grpc").await;
}

async fn same_decisions_and_outage(kind: &str) {
    let grpc = kind.ends_with("_grpc");
    let mut kserve = match grpc {
        true => KserveServer::start_grpc(&models()),
        false => KserveServer::start(&models()),
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let local = ServiceProcess::start(BIN, &envs(a.path(), None));
    let mut remote_envs = envs_for(b.path(), Some(&kserve.url()), kind);
    if grpc {
        remote_envs.push(("TRADESERVE_MODELS__KSERVE_V2__PROTOCOL", "grpc".into()));
        remote_envs.push(("TRADESERVE_MODELS__KSERVE_V2__GRPC_URL", kserve.grpc_url()));
    }
    let remote = ServiceProcess::start(BIN, &remote_envs);
    let client = reqwest::Client::new();

    same_decisions(&client, &local, &remote).await;
    same_explanations(&client, &local, &remote).await;
    // The in-process service's decisions, replayed through the model server: no mismatch.
    replay_through(&a.path().join("audit.jsonl"), &remote_envs, 47);

    let models_view = get(&client, &remote, "/api/v1/models").await;
    let m = &models_view["models"];
    assert_eq!(
        m["regime_detector"]["backend"],
        json!({"kind": "in_process"})
    );
    assert_eq!(
        m["bull_specialist"]["backend"]["kind"],
        kind.trim_end_matches("_grpc")
    );
    assert_eq!(
        m["bull_specialist"]["backend"]["model"],
        "bull_specialist-1"
    );
    let endpoint = match kind {
        "kserve_v2" => format!("{}/v2/models/bear_specialist-1/infer", kserve.url()),
        "kserve_v2_grpc" => format!(
            "{}/inference.GRPCInferenceService/ModelInfer",
            kserve.grpc_url()
        ),
        _ => format!("{}/v1/models/bear_specialist-1:predict", kserve.url()),
    };
    assert_eq!(m["bear_specialist"]["backend"]["endpoint"], endpoint);

    // Health from the server's own status endpoint (model ready / model status).
    wait_for_status(&client, &remote, "ready").await;

    // The model server dies: every decision is a 503 naming a remote role, not a 504 at the
    // deadline; the service itself stays up, and its health says what it sees.
    let (port, grpc_port) = (kserve.port(), kserve.grpc_port());
    kserve.kill();
    unavailable(&client, &remote).await;
    wait_for_status(&client, &remote, "unreachable").await;

    // Back on the same port: decisions resume without restarting TradeServe, at the latest
    // once the circuits' open period has passed and a probe went through.
    let _kserve = KserveServer::start_with(&models(), port, grpc_port);
    let until = Instant::now() + HANG;
    loop {
        let (s, v) = post(&client, &remote.url(), &requests()[0]).await;
        if s == 200 {
            break;
        }
        assert_eq!(v["error"]["code"], "backend_unavailable", "{v}");
        assert!(Instant::now() < until, "decisions did not resume: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
fn a_model_server_with_the_wrong_model_stops_the_start() {
    // bull_specialist v1 on the server is really v2's model: its golden vectors disagree.
    let served = tempfile::tempdir().unwrap();
    let bull = served.path().join("bull_specialist/1");
    std::fs::create_dir_all(&bull).unwrap();
    std::fs::copy(
        models().join("bull_specialist/2/model.onnx"),
        bull.join("model.onnx"),
    )
    .unwrap();
    let kserve = KserveServer::start(served.path());
    let dir = tempfile::tempdir().unwrap();
    let mut envs = envs(dir.path(), Some(&kserve.url()));
    envs.retain(|(k, _)| !k.contains("BEAR") && !k.contains("SIDEWAYS"));
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bull_specialist v1") && stderr.contains("golden vectors"),
        "{stderr}"
    );
}

/// Every request decided alike in process (`local`) and with remote roles (`remote`).
async fn same_decisions(client: &reqwest::Client, local: &ServiceProcess, remote: &ServiceProcess) {
    for body in requests() {
        let (s1, here) = post(client, &local.url(), &body).await;
        let (s2, there) = post(client, &remote.url(), &body).await;
        assert_eq!((s1, s2), (200, 200), "{here} {there}");
        assert_eq!(here["action"], there["action"], "{body}");
        assert_eq!(
            here["recommended_quantity"], there["recommended_quantity"],
            "{body}"
        );
        let (c1, c2) = (
            here["confidence"].as_f64().unwrap(),
            there["confidence"].as_f64().unwrap(),
        );
        assert!((c1 - c2).abs() <= 1e-5, "{body}: {c1} vs {c2}");
        assert_eq!(
            here["metadata"]["model_versions"],
            there["metadata"]["model_versions"]
        );
    }
}

/// Wait until `/health/ready` shows the bull specialist's model status as `status`.
async fn wait_for_status(client: &reqwest::Client, service: &ServiceProcess, status: &str) {
    let until = Instant::now() + HANG;
    loop {
        let ready = get(client, service, "/health/ready").await;
        if ready["backends"]["bull_specialist"]["model_status"]["status"] == status {
            return;
        }
        assert!(Instant::now() < until, "never {status}: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `tradeserve replay --remote` of `audit` with the backends `envs` configure: every decision
/// re-run through them, `decisions` matched within the remote tolerance, none skipped.
fn replay_through(audit: &Path, envs: &[(&'static str, String)], decisions: u64) {
    let out = std::process::Command::new(BIN)
        .arg("replay")
        .arg("--audit-log")
        .arg(audit)
        .arg("--models")
        .arg(models())
        .arg("--remote")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report}");
    assert_eq!(report["through"], "remote");
    assert_eq!(report["tolerance"], 1e-5);
    assert_eq!(report["matched"], decisions, "{report}");
    assert_eq!(report["mismatched"], 0, "{report}");
    assert_eq!(report["skipped"], 0, "{report}");
}

/// Explanations through the remote roles (one batched call per model) equal the in-process
/// ones within float32 arithmetic.
async fn same_explanations(
    client: &reqwest::Client,
    local: &ServiceProcess,
    remote: &ServiceProcess,
) {
    for mut body in requests().into_iter().step_by(7) {
        body["explain"] = json!(true);
        let (s1, here) = post(client, &local.url(), &body).await;
        let (s2, there) = post(client, &remote.url(), &body).await;
        assert_eq!((s1, s2), (200, 200), "{here} {there}");
        let (a, b) = (&here["explanation"], &there["explanation"]);
        assert_eq!(a["output"], b["output"]);
        let values = a["values"].as_object().unwrap();
        assert_eq!(values.len(), 15);
        for (feature, v) in values {
            let (x, y) = (v.as_f64().unwrap(), b["values"][feature].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-5, "{feature}: {x} vs {y}");
        }
    }
}

/// With the model server down: 503 `backend_unavailable` naming a specialist — not 504, which
/// a request left to run into its deadline would get — and the service itself alive.
async fn unavailable(client: &reqwest::Client, remote: &ServiceProcess) {
    for body in requests().iter().take(8) {
        let (s, v) = post(client, &remote.url(), body).await;
        assert_eq!(s, 503, "{v}");
        assert_eq!(v["error"]["code"], "backend_unavailable", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("specialist"), "{message}");
    }
    let live = client
        .get(format!("{}/health/live", remote.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
}

/// The three specialists' v1 packaged by `tradeserve torchserve package` into `ts`'s model
/// store and registered through its management API.
fn register_specialists(ts: &TorchServeServer) {
    for role in ["bull_specialist", "bear_specialist", "sideways_specialist"] {
        let out = std::process::Command::new(BIN)
            .args(["torchserve", "package", "--model"])
            .arg(models().join(role).join("1"))
            .arg("--export-path")
            .arg(ts.store())
            .arg("--archiver")
            .arg(TorchServeServer::archiver())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["name"], role);
        assert_eq!(printed["version"], "1");
        ts.register(&format!("{role}.mar"), 1).unwrap();
    }
}

/// The service's files in `dir`, the specialists on `ts` (its inference and management APIs).
fn torchserve_envs(dir: &Path, ts: &TorchServeServer) -> Vec<(&'static str, String)> {
    let mut envs = envs(dir, None);
    envs.push((
        "TRADESERVE_MODELS__TORCHSERVE__INFERENCE_URL",
        ts.inference_url(),
    ));
    envs.push((
        "TRADESERVE_MODELS__TORCHSERVE__MANAGEMENT_URL",
        ts.management_url(),
    ));
    for key in [
        "TRADESERVE_MODELS__BACKENDS__BULL_SPECIALIST",
        "TRADESERVE_MODELS__BACKENDS__BEAR_SPECIALIST",
        "TRADESERVE_MODELS__BACKENDS__SIDEWAYS_SPECIALIST",
    ] {
        envs.push((key, "torchserve".into()));
    }
    envs
}

/// The specialists on TorchServe's gRPC inference API (`models.torchserve.protocol =
/// "grpc"`): the same decisions as in process, a replay without a mismatch, the endpoint
/// shown; killed, 503s naming the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TorchServe (scripts/test.sh installs it)"]
async fn specialists_on_torchserves_grpc_api_decide_as_in_process() {
    let mut ts = TorchServeServer::start();
    register_specialists(&ts);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let local = ServiceProcess::start(BIN, &envs(a.path(), None));
    let mut envs = torchserve_envs(b.path(), &ts);
    let grpc_url = format!("http://127.0.0.1:{}", ts.grpc_port);
    envs.extend([
        ("TRADESERVE_MODELS__TORCHSERVE__PROTOCOL", "grpc".into()),
        ("TRADESERVE_MODELS__TORCHSERVE__GRPC_URL", grpc_url.clone()),
    ]);
    let remote = ServiceProcess::start(BIN, &envs);
    let client = reqwest::Client::new();
    same_decisions(&client, &local, &remote).await;
    replay_through(&a.path().join("audit.jsonl"), &envs, 41);
    let view = get(&client, &remote, "/api/v1/models").await;
    assert_eq!(
        view["models"]["bear_specialist"]["backend"]["endpoint"],
        format!("{grpc_url}/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions")
    );
    ts.kill();
    unavailable(&client, &remote).await;
}

/// TorchServe for real: the three specialists packaged by `tradeserve torchserve package`,
/// registered through its management API, called through its inference API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TorchServe (scripts/test.sh installs it)"]
async fn specialists_on_torchserve_decide_as_in_process_and_recover_after_its_restart() {
    let mut ts = TorchServeServer::start();
    let register = register_specialists;
    register(&ts);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let local = ServiceProcess::start(BIN, &envs(a.path(), None));
    let envs = torchserve_envs(b.path(), &ts);
    let remote = ServiceProcess::start(BIN, &envs);
    let client = reqwest::Client::new();
    same_decisions(&client, &local, &remote).await;
    replay_through(&a.path().join("audit.jsonl"), &envs, 41);
    let view = get(&client, &remote, "/api/v1/models").await;
    assert_eq!(
        view["models"]["bear_specialist"]["backend"]["endpoint"],
        format!("{}/predictions/bear_specialist/1", ts.inference_url())
    );

    // Killed (Java and its workers): 503s; restarted on the same ports and registered again
    // (a model store is not a registry): decisions resume without restarting TradeServe.
    let (inference, management) = (ts.inference_port, ts.management_port);
    ts.kill();
    drop(ts);
    unavailable(&client, &remote).await;
    let ts = TorchServeServer::start_on(inference, management, tradeserve_testkit::free_port());
    register(&ts);
    let until = Instant::now() + HANG;
    loop {
        let (s, v) = post(&client, &remote.url(), &requests()[0]).await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < until, "decisions did not resume: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The TorchServe lifecycle TradeServe drives through the management API, against a real
/// TorchServe whose model store TradeServe may write: bear v1 (the champion) and bull v2 (an
/// experiment's treatment) are packaged and registered by TradeServe itself and verified
/// through the inference API before any request reaches them; bull v1 (control) stays in
/// process. The A/B split routes each client to its arm, the treatment decides exactly as
/// bull v2 does in process, and the report counts both arms. Health shows the management
/// API's status; stopping the experiment unregisters bull v2 after the grace period; a
/// TorchServe restarted with an empty registry gets bear v1 back without anyone registering
/// it by hand and without restarting TradeServe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TorchServe (scripts/test.sh installs it)"]
async fn torchserve_versions_are_registered_verified_routed_and_unregistered_by_tradeserve() {
    let store = tempfile::tempdir().unwrap();
    let ports = [0; 3].map(|_| tradeserve_testkit::free_port());
    let ts = TorchServeServer::start_with(ports[0], ports[1], ports[2], Some(store.path()));
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut envs = envs(a.path(), None);
    envs.extend([
        (
            "TRADESERVE_MODELS__TORCHSERVE__INFERENCE_URL",
            ts.inference_url(),
        ),
        (
            "TRADESERVE_MODELS__TORCHSERVE__MANAGEMENT_URL",
            ts.management_url(),
        ),
        (
            "TRADESERVE_MODELS__TORCHSERVE__MODEL_STORE",
            store.path().display().to_string(),
        ),
        (
            "TRADESERVE_MODELS__TORCHSERVE__ARCHIVER",
            TorchServeServer::archiver().display().to_string(),
        ),
        ("TRADESERVE_MODELS__REMOTE__STATUS_INTERVAL", "200ms".into()),
        (
            "TRADESERVE_MODELS__TORCHSERVE__UNREGISTER_AFTER",
            "1s".into(),
        ),
        (
            "TRADESERVE_MODELS__BACKENDS__BULL_SPECIALIST",
            "torchserve".into(),
        ),
        (
            "TRADESERVE_MODELS__BACKENDS__BEAR_SPECIALIST",
            "torchserve".into(),
        ),
        (
            "TRADESERVE_MODELS__BACKENDS__VERSIONS__BULL_SPECIALIST__1",
            "in_process".into(),
        ),
        ("TRADESERVE_CONTROL__POLL_INTERVAL", "100ms".into()),
    ]);
    let service = ServiceProcess::start(BIN, &envs);
    let v1 = ServiceProcess::start(BIN, &self::envs(b.path(), None));
    let mut v2_envs = self::envs(c.path(), None);
    v2_envs.push(("TRADESERVE_MODELS__VERSIONS__BULL_SPECIALIST", "2".into()));
    let v2 = ServiceProcess::start(BIN, &v2_envs);
    let client = reqwest::Client::new();
    let registered =
        |name: &str, version: &str| ts.management("GET", &format!("/models/{name}/{version}")).0;
    assert_eq!(
        registered("bear_specialist", "1"),
        200,
        "the champion's TorchServe role is registered at start"
    );
    assert_eq!(
        registered("bull_specialist", "1"),
        404,
        "bull v1 is in process"
    );

    let exp = json!({"experiment_id": "ts-ab", "role": "bull_specialist", "control_model_version": "1",
        "treatment_model_version": "2", "traffic_split": 0.5, "salt": "s1", "bucketing": "client"});
    let res = client
        .post(format!("{}/api/v1/experiments", service.url()))
        .header("x-actor", "alice")
        .json(&exp)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201, "{}", res.text().await.unwrap());
    assert_eq!(
        registered("bull_specialist", "2"),
        200,
        "the treatment was registered before the experiment was stored"
    );

    let mut arms = std::collections::BTreeMap::<String, u64>::new();
    for (i, body) in requests().into_iter().take(40).enumerate() {
        let user = format!("client-{i}");
        let decide = |url: String| {
            let client = client.clone();
            let (body, user) = (body.clone(), user.clone());
            async move {
                let r = client
                    .post(format!("{url}/api/v1/predict"))
                    .header("x-client-id", user)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let (s, d) = decide(service.url()).await;
        assert_eq!(s, 200, "{d}");
        let arm = d["metadata"]["experiment"]["arm"]
            .as_str()
            .unwrap()
            .to_owned();
        let bucket = tradeserve_core::experiment::bucket("s1", &user);
        let want = if f64::from(bucket) < 5_000.0 {
            "treatment"
        } else {
            "control"
        };
        assert_eq!(arm, want, "{user}");
        let reference = if arm == "treatment" { &v2 } else { &v1 };
        let (_, r) = decide(reference.url()).await;
        assert_eq!(
            d["metadata"]["model_versions"],
            r["metadata"]["model_versions"]
        );
        assert_eq!(d["action"], r["action"], "{body}");
        let (c1, c2) = (
            d["confidence"].as_f64().unwrap(),
            r["confidence"].as_f64().unwrap(),
        );
        assert!((c1 - c2).abs() <= 1e-5, "{arm} {body}: {c1} vs {c2}");
        *arms.entry(arm).or_default() += 1;
    }
    assert!(arms.len() == 2, "both arms served: {arms:?}");
    let report = get(&client, &service, "/api/v1/experiments/ts-ab/report").await;
    for (arm, n) in &arms {
        assert_eq!(
            report["arms"][arm]["decisions"].as_u64(),
            Some(*n),
            "{report}"
        );
        assert_eq!(report["arms"][arm]["errors"].as_u64(), Some(0), "{report}");
    }

    // TorchServe's own count: the treatment's decisions (and the golden check) reached it.
    let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", ports[2]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("ts_inference_requests_total")
                && l.contains("bull_specialist")
                && l.contains("model_version=\"2\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        served >= arms["treatment"] as f64,
        "TorchServe served {served} bull v2 calls: {text}"
    );

    // Health: the champion's TorchServe role, as the management API describes it.
    let until = Instant::now() + HANG;
    loop {
        let ready = get(&client, &service, "/health/ready").await;
        let status = &ready["backends"]["bear_specialist"]["model_status"];
        if status["status"] == "registered" {
            assert_eq!(status["ready_workers"], 1, "{ready}");
            break;
        }
        assert!(Instant::now() < until, "no model status: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let models = get(&client, &service, "/api/v1/models").await;
    assert_eq!(
        models["models"]["bear_specialist"]["backend"]["model_status"]["status"],
        "registered"
    );
    assert_eq!(
        models["models"]["bull_specialist"]["backend"]["kind"],
        "in_process"
    );

    // The experiment stops: nothing routes to bull v2, which is unregistered after the grace
    // period; bear v1 (the champion) stays.
    let res = client
        .delete(format!("{}/api/v1/experiments/ts-ab", service.url()))
        .header("x-actor", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
    let until = Instant::now() + HANG;
    while registered("bull_specialist", "2") != 404 {
        assert!(Instant::now() < until, "bull v2 was never unregistered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(registered("bear_specialist", "1"), 200);

    // TorchServe restarts with nothing registered: the steward registers bear v1 again and
    // decisions resume, TradeServe untouched.
    let mut ts = ts;
    ts.kill();
    drop(ts);
    let ts = TorchServeServer::start_with(ports[0], ports[1], ports[2], Some(store.path()));
    assert_eq!(ts.management("GET", "/models/bear_specialist/1").0, 404);
    let until = Instant::now() + HANG;
    loop {
        let (s, v) = post(&client, &service.url(), &requests()[0]).await;
        if s == 200 && ts.management("GET", "/models/bear_specialist/1").0 == 200 {
            break;
        }
        assert!(Instant::now() < until, "decisions did not resume: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An experiment naming a version whose model server cannot serve it is refused at the API
/// with what is wrong, at once, and the champion keeps deciding: the server not answering is
/// 503 `backend_unavailable` (try again); a server copy that answers its golden vectors wrongly
/// is 422 `model_refused`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
async fn an_experiment_on_a_version_its_server_cannot_serve_is_refused_with_the_reason() {
    // bull v2 on this server is really bear v1's model; bull v1 stays in process.
    let served = tempfile::tempdir().unwrap();
    let v2 = served.path().join("bull_specialist/2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::copy(
        models().join("bear_specialist/1/model.onnx"),
        v2.join("model.onnx"),
    )
    .unwrap();
    let kserve = KserveServer::start(served.path());
    let client = reqwest::Client::new();
    let exp = json!({"experiment_id": "e", "role": "bull_specialist", "control_model_version": "1",
        "treatment_model_version": "2", "traffic_split": 0.5});
    for (url, status, code) in [
        (
            format!("http://127.0.0.1:{}", tradeserve_testkit::free_port()),
            503,
            "backend_unavailable",
        ),
        (kserve.url(), 422, "model_refused"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut envs = envs(dir.path(), None);
        envs.extend([
            (
                "TRADESERVE_MODELS__BACKENDS__BULL_SPECIALIST",
                "kserve_v2".to_owned(),
            ),
            (
                "TRADESERVE_MODELS__BACKENDS__VERSIONS__BULL_SPECIALIST__1",
                "in_process".to_owned(),
            ),
            ("TRADESERVE_MODELS__KSERVE_V2__URL", url),
            (
                "TRADESERVE_MODELS__KSERVE_V2__MODEL",
                "{role}-{version}".to_owned(),
            ),
            (
                "TRADESERVE_MODELS__KSERVE_V2__VERSIONED",
                "false".to_owned(),
            ),
        ]);
        let service = ServiceProcess::start(BIN, &envs);
        let res = client
            .post(format!("{}/api/v1/experiments", service.url()))
            .header("x-actor", "alice")
            .json(&exp)
            .send()
            .await
            .unwrap();
        let s = res.status().as_u16();
        let bytes = res.bytes().await.unwrap();
        tradeserve_testkit::openapi::assert_documented("POST", "/api/v1/experiments", s, &bytes);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((s, &v["error"]["code"]), (status, &json!(code)), "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("bull_specialist v2"),
            "{v}"
        );
        let (s, d) = post(&client, &service.url(), &requests()[0]).await;
        assert_eq!(s, 200, "the champion keeps deciding: {d}");
    }
}
