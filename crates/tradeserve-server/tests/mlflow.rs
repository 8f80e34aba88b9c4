//! Models from a real MLflow registry (started by the test harness): serve the champion,
//! follow an alias move within a poll interval under load with zero failed requests, refuse a
//! corrupt version, keep serving through an MLflow outage, and start from the disk cache.
//!
//! Ignored by plain `cargo test`; `scripts/test.sh` installs MLflow and runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tradeserve_core::types::Role;
use tradeserve_features::ReplayClock;
use tradeserve_models::mlflow::MlflowClient;
use tradeserve_models::mlflow::publish::publish;
use tradeserve_server::app::router;
use tradeserve_server::config::{Config, ModelSourceKind};
use tradeserve_server::serve::{Service, build_with_clock, start_registry};
use tradeserve_server::state::AppState;
use tradeserve_testkit::{HANG, MlflowServer, corrupt_model_copy, eventually_async};

const POLL: Duration = Duration::from_millis(400);

fn model_dir(role: Role, version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(role.as_str())
        .join(version)
}

fn config(url: &str, cache: &std::path::Path, audit: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.models.source = ModelSourceKind::Mlflow;
    c.models.mlflow.tracking_uri = url.to_owned();
    c.models.mlflow.cache_dir = cache.to_path_buf();
    c.models.mlflow.poll_interval = POLL;
    c.models.mlflow.request_timeout =
        tradeserve_core::bounded::PositiveDuration::new(HANG).unwrap();
    // No request may fail during swaps and outages: a debug build on a busy machine can take
    // longer than the default 40 ms deadline, which is not what these tests are about.
    c.server.request_deadline = tradeserve_core::bounded::PositiveDuration::new(HANG).unwrap();
    c.events.audit_log = audit.join("audit.jsonl");
    c.control.file = audit.join("control.json");
    c
}

/// A client of `mlflow`, with version 1 of every role published as the champion.
async fn champions_v1(mlflow: &MlflowServer) -> MlflowClient {
    let client = MlflowClient::new(&mlflow.url(), None, HANG).unwrap();
    for role in Role::ALL {
        publish(
            &client,
            &model_dir(role, "1"),
            &role.registry_name(),
            Some("champion"),
        )
        .await
        .unwrap();
    }
    client
}

async fn start(config: &Config) -> (Service, tokio::task::JoinHandle<()>) {
    let c = config.clone();
    let service =
        tokio::task::spawn_blocking(move || build_with_clock(&c, ReplayClock::Fixed(500)))
            .await
            .unwrap()
            .unwrap();
    let poller = start_registry(&service.state, HANG).await.unwrap();
    (service, poller)
}

async fn call(state: &Arc<AppState>, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = router(Arc::clone(state)).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    tradeserve_testkit::openapi::assert_documented(method, path, status.as_u16(), &bytes);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn served_version(state: &Arc<AppState>, role: Role) -> String {
    let (_, v) = call(state, "GET", "/api/v1/models", "").await;
    v["models"][role.as_str()]["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// How long until `role` is served at `version` (printed, never asserted).
async fn wait_for_version(state: &Arc<AppState>, role: Role, version: &str) -> Duration {
    let start = Instant::now();
    eventually_async(&format!("{role} served at v{version}"), || {
        let state = Arc::clone(state);
        let version = version.to_owned();
        async move { (served_version(&state, role).await == version).then_some(()) }
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a real MLflow server: run scripts/test.sh"]
async fn models_follow_the_registry_and_survive_its_outages() {
    let mut mlflow = MlflowServer::start();
    let client = champions_v1(&mlflow).await;
    let cache = tempfile::tempdir().unwrap();
    let audit = tempfile::tempdir().unwrap();
    let cfg = config(&mlflow.url(), cache.path(), audit.path());

    // Cold start from MLflow: the champion (v1 everywhere) serves, with its registry identity.
    let (service, poller) = start(&cfg).await;
    let state = Arc::clone(&service.state);
    let (s, v) = call(&state, "GET", "/api/v1/models", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["source"], "mlflow");
    assert_eq!(v["registry"]["reachable"], true);
    for role in Role::ALL {
        let m = &v["models"][role.as_str()];
        assert_eq!(m["version"], "1");
        assert_eq!(m["alias"], "champion");
        assert_eq!(m["source"], format!("models:/tradeserve.{role}/1"));
    }
    let (s, d) = call(&state, "POST", "/api/v1/predict", r#"{"symbol":"AAPL"}"#).await;
    assert!(s == StatusCode::OK || s == StatusCode::FORBIDDEN, "{d}");
    assert_eq!(d["metadata"]["model_versions"]["bull_specialist"], "1");

    // Concurrent load for the rest of the registry changes: no request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for i in 0..4 {
        let (state, stop, ok, failed) = (
            Arc::clone(&state),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        load.push(tokio::spawn(async move {
            let symbols = ["AAPL", "MSFT", "SPY", "BRK.B"];
            while !stop.load(Ordering::Relaxed) {
                let body = format!(r#"{{"symbol":"{}","risk_check":false}}"#, symbols[i % 4]);
                let (s, _) = call(&state, "POST", "/api/v1/predict", &body).await;
                if s == StatusCode::OK {
                    ok.fetch_add(1, Ordering::Relaxed)
                } else {
                    failed.fetch_add(1, Ordering::Relaxed)
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    // Publish v2 of the bull specialist and move the alias: served within one poll interval
    // (plus download and verification).
    let bull = Role::BullSpecialist.registry_name();
    publish(
        &client,
        &model_dir(Role::BullSpecialist, "2"),
        &bull,
        Some("champion"),
    )
    .await
    .unwrap();
    let took = wait_for_version(&state, Role::BullSpecialist, "2").await;
    println!("alias move served after {took:?} (poll interval {POLL:?})");
    assert_eq!(served_version(&state, Role::BearSpecialist).await, "1");
    let (_, v) = call(&state, "GET", "/api/v1/models", "").await;
    assert_eq!(
        v["previous"]["bull_specialist"], "1",
        "the replaced set stays loaded"
    );

    // A corrupt v3 is refused; v2 keeps serving; the refusal is counted and reported.
    let bad = tempfile::tempdir().unwrap();
    corrupt_model_copy(&model_dir(Role::BullSpecialist, "2"), bad.path());
    publish(&client, bad.path(), &bull, Some("champion"))
        .await
        .unwrap();
    tokio::time::sleep(POLL * 3).await;
    assert_eq!(served_version(&state, Role::BullSpecialist).await, "2");
    let (s, v) = call(&state, "POST", "/api/v1/models/reload", "").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "model_refused");
    assert!(
        state
            .metrics
            .render()
            .unwrap()
            .contains("tradeserve_model_reloads_total{result=\"refused\"}")
    );
    assert!(state.metrics.model_reloads_refused.get() >= 1);

    // MLflow killed: decisions keep flowing from the loaded set; the outage is visible.
    mlflow.kill();
    tokio::time::sleep(POLL * 3).await;
    let (s, v) = call(&state, "POST", "/api/v1/models/reload", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "registry_unavailable");
    let (s, v) = call(&state, "GET", "/health/ready", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["registry"]["reachable"], false);
    assert_eq!(state.metrics.registry_up.get(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("requests during swaps and outage: {ok} ok, {failed} failed");
    assert!(ok > 200, "{ok}");
    assert_eq!(failed, 0);
    poller.abort();
    drop(service);

    // Restart with MLflow still down: serve the last good set from the disk cache.
    let started = Instant::now();
    let (service, poller) = start(&cfg).await;
    println!(
        "warm start from the disk cache with MLflow down: {:?}",
        started.elapsed()
    );
    let state = Arc::clone(&service.state);
    assert_eq!(served_version(&state, Role::BullSpecialist).await, "2");
    let (s, _) = call(&state, "POST", "/api/v1/predict", r#"{"symbol":"MSFT"}"#).await;
    assert!(s == StatusCode::OK || s == StatusCode::FORBIDDEN);
    poller.abort();

    // No cache and no MLflow: not ready, and predictions answer 503.
    let empty = tempfile::tempdir().unwrap();
    let (service, poller) = start(&config(&mlflow.url(), empty.path(), audit.path())).await;
    let state = Arc::clone(&service.state);
    let (s, v) = call(&state, "GET", "/health/ready", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let (s, v) = call(&state, "POST", "/api/v1/predict", r#"{"symbol":"MSFT"}"#).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "not_ready");

    // MLflow comes back (same state, same port). The champion alias still points at the
    // corrupt v3, so there is still nothing safe to serve: not ready.
    let _back = MlflowServer::start_in(mlflow.dir(), mlflow.port);
    tokio::time::sleep(POLL * 4).await;
    let (s, _) = call(&state, "GET", "/health/ready", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    // The operator points the alias back at v2: the poller loads it and the service becomes
    // ready without a restart.
    let client = MlflowClient::new(&mlflow.url(), None, HANG).unwrap();
    client.set_alias(&bull, "champion", "2").await.unwrap();
    let deadline = Instant::now() + HANG;
    loop {
        let (s, _) = call(&state, "GET", "/health/ready", "").await;
        if s == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready after the alias was fixed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_version(&state, Role::BullSpecialist).await, "2");
    poller.abort();
}

#[test]
#[ignore = "needs a real MLflow server: run scripts/test.sh"]
fn the_cli_publishes_a_model_folder_and_moves_the_alias() {
    let mlflow = MlflowServer::start();
    let bin = env!("CARGO_BIN_EXE_tradeserve");
    let run = |version: &str| {
        let out = tradeserve_testkit::run_ok(
            std::process::Command::new(bin)
                .args([
                    "models",
                    "publish",
                    "--name",
                    "tradeserve.bear_specialist",
                    "--alias",
                    "champion",
                    "--dir",
                ])
                .arg(model_dir(Role::BearSpecialist, version))
                .env("MLFLOW_TRACKING_URI", mlflow.url()),
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(run("1")["version"], "1");
    let second = run("2");
    assert_eq!(
        (second["version"].as_str(), second["alias"].as_str()),
        (Some("2"), Some("champion"))
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = MlflowClient::new(&mlflow.url(), None, HANG).unwrap();
    let v = rt
        .block_on(client.version_by_alias("tradeserve.bear_specialist", "champion"))
        .unwrap();
    assert_eq!(v.version, "2");
    // The champion, packaged for TorchServe straight from the registry (downloaded into the
    // cache, verified, archived as version 2 of the role its name says).
    let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = tradeserve_testkit::run_ok(
        std::process::Command::new(bin)
            .args([
                "torchserve",
                "package",
                "--model",
                "models:/tradeserve.bear_specialist@champion",
            ])
            .arg("--export-path")
            .arg(store.path())
            .arg("--cache-dir")
            .arg(cache.path())
            .arg("--archiver")
            .arg(tradeserve_testkit::TorchServeServer::archiver())
            .env("MLFLOW_TRACKING_URI", mlflow.url()),
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["version"], "2", "{printed}");
    assert_eq!(printed["role"], "bear_specialist");
    assert_eq!(printed["source"], "models:/tradeserve.bear_specialist/2");
    assert!(store.path().join("bear_specialist.mar").is_file());
    assert!(
        cache
            .path()
            .join("tradeserve.bear_specialist/2/model.onnx")
            .is_file()
    );
    let out = std::process::Command::new(bin)
        .args([
            "torchserve",
            "package",
            "--model",
            "models:/tradeserve.bear_specialist@nope",
        ])
        .arg("--export-path")
        .arg(store.path())
        .arg("--cache-dir")
        .arg(cache.path())
        .env("MLFLOW_TRACKING_URI", mlflow.url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a model folder: a clear error and a failing exit status.
    let out = std::process::Command::new(bin)
        .args(["models", "publish", "--name", "x", "--dir", "/tmp"])
        .env("MLFLOW_TRACKING_URI", mlflow.url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a model folder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a real MLflow server: run scripts/test.sh"]
async fn a_completed_rollout_moves_the_champion_alias() {
    let mlflow = MlflowServer::start();
    let client = champions_v1(&mlflow).await;
    // Version 2 of one role is registered but not the champion.
    publish(
        &client,
        &model_dir(Role::BullSpecialist, "2"),
        &Role::BullSpecialist.registry_name(),
        None,
    )
    .await
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let audit = tempfile::tempdir().unwrap();
    let (service, poller) = start(&config(&mlflow.url(), cache.path(), audit.path())).await;
    let state = &service.state;
    assert_eq!(served_version(state, Role::BullSpecialist).await, "1");

    // A version the registry does not have is refused at creation.
    let (s, v) = call(
        state,
        "POST",
        "/api/v1/rollouts",
        r#"{"candidate":{"bull_specialist":"5"}}"#,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "unknown_model_version");

    let body = r#"{"rollout_id":"ro-ml","candidate":{"bull_specialist":"2"},"auto_promote":false}"#;
    let (s, v) = call(state, "POST", "/api/v1/rollouts", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for stage in ["canary", "partial", "full", "completed"] {
        let (s, v) = call(state, "POST", "/api/v1/rollouts/ro-ml/promote", "").await;
        assert_eq!(
            (s, v["stage"].as_str()),
            (StatusCode::OK, Some(stage)),
            "{v}"
        );
    }
    // The alias moved in MLflow, and the candidate serves at once.
    let champion = client
        .version_by_alias(&Role::BullSpecialist.registry_name(), "champion")
        .await
        .unwrap();
    assert_eq!(champion.version, "2");
    assert_eq!(served_version(state, Role::BullSpecialist).await, "2");
    // The poller later resolves the moved alias to the same set: nothing flips back.
    tokio::time::sleep(POLL * 3).await;
    assert_eq!(served_version(state, Role::BullSpecialist).await, "2");
    assert_eq!(served_version(state, Role::BearSpecialist).await, "1");
    poller.abort();
}

/// Copy `from` (a folder) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Registry versions of a role served by a model server (KServe's Open Inference Protocol):
/// the champion starts there; an alias move swaps to the new version only once that version
/// answers its golden vectors through the server; a version whose server copy answers
/// differently is refused (502 on manual reload) and the old set keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs real MLflow and KServe servers: run scripts/test.sh"]
async fn registry_versions_on_a_model_server_are_verified_before_the_swap() {
    let mlflow = MlflowServer::start();
    let client = champions_v1(&mlflow).await;
    // The model server's folder: bull v1 and v2 as published, and under the name of bull v3 a
    // different model (bear v1's) — a deployment mistake the golden vectors must catch.
    let served = tempfile::tempdir().unwrap();
    for version in ["1", "2"] {
        copy_dir(
            &model_dir(Role::BullSpecialist, version),
            &served.path().join("bull_specialist").join(version),
        );
    }
    copy_dir(
        &model_dir(Role::BearSpecialist, "1"),
        &served.path().join("bull_specialist/3"),
    );
    let kserve = tradeserve_testkit::KserveServer::start(served.path());
    let (cache, audit) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg = config(&mlflow.url(), cache.path(), audit.path());
    cfg.models.backends.bull_specialist = tradeserve_models::remote::BackendKind::KserveV2;
    cfg.models.kserve_v2.url = kserve.url();
    cfg.models.kserve_v2.model = "{role}-{version}".into();
    cfg.models.kserve_v2.versioned = false;

    let (service, poller) = start(&cfg).await;
    let state = Arc::clone(&service.state);
    let backend = |v: &Value| v["models"]["bull_specialist"]["backend"]["model"].clone();
    let (_, v) = call(&state, "GET", "/api/v1/models", "").await;
    assert_eq!(backend(&v), "bull_specialist-1", "{v}");
    let (s, d) = call(
        &state,
        "POST",
        "/api/v1/predict",
        r#"{"symbol":"AAPL","risk_check":false}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");

    // v2 published as the champion: served from the model server once verified there.
    publish(
        &client,
        &model_dir(Role::BullSpecialist, "2"),
        "tradeserve.bull_specialist",
        Some("champion"),
    )
    .await
    .unwrap();
    wait_for_version(&state, Role::BullSpecialist, "2").await;
    let (_, v) = call(&state, "GET", "/api/v1/models", "").await;
    assert_eq!(backend(&v), "bull_specialist-2", "{v}");
    assert_eq!(
        v["models"]["bull_specialist"]["backend"]["state"]["circuit"],
        "closed"
    );

    // v3 (bull v1's folder, so it loads and verifies in process) meets bear's model on the
    // server: refused, v2 keeps serving.
    publish(
        &client,
        &model_dir(Role::BullSpecialist, "1"),
        "tradeserve.bull_specialist",
        Some("champion"),
    )
    .await
    .unwrap();
    let (s, v) = call(&state, "POST", "/api/v1/models/reload", "").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "model_refused");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bull_specialist v3") && message.contains("differs"),
        "{message}"
    );
    assert_eq!(served_version(&state, Role::BullSpecialist).await, "2");
    let (s, _) = call(
        &state,
        "POST",
        "/api/v1/predict",
        r#"{"symbol":"AAPL","risk_check":false}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    poller.abort();
}
