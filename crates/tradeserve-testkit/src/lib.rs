//! Test harness for the real services TradeServe talks to.
//!
//! Each server is started on `127.0.0.1` on a free port in its own process group, with its
//! state in a temporary folder, and stopped by that process group (never by name) when the
//! handle drops. Binaries come from the caches `scripts/test.sh` fills; a missing binary is a
//! test failure that says how to install it, never a silent skip.

#![allow(clippy::expect_used, clippy::panic)]

pub mod mirror;
pub mod openapi;
pub mod prometheus;
pub mod torchserve;
pub mod wait;

pub use prometheus::PrometheusServer;
/// The Redis client, for tests that read what the service wrote (the server itself reaches
/// Redis only through `tradeserve-redis`).
pub use redis;
pub use torchserve::TorchServeServer;
pub use wait::{HANG, eventually, eventually_async, wait_for};

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// `~/.cache/tradeserve` unless `TRADESERVE_CACHE` says otherwise.
pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TRADESERVE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/tradeserve")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

pub(crate) fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

/// The sum of every series of the metric `name` (all its label sets) that the service at
/// `addr` (`HOST:PORT`, plain HTTP) exports on `/metrics`; 0 when it cannot be read.
pub fn metric_sum(addr: &str, name: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0.0;
    };
    let _ = s.set_read_timeout(Some(HANG));
    // HTTP/1.0: the body ends with the connection (no chunked encoding to undo).
    let req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    let mut text = String::new();
    if s.write_all(req.as_bytes()).is_err() || s.read_to_string(&mut text).is_err() {
        return 0.0;
    }
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A child process in its own process group, with its output in `<dir>/<name>.log`. The whole
/// group is killed (SIGKILL) and reaped when it is dropped.
pub(crate) struct Managed {
    child: Option<Child>,
    name: &'static str,
    dir: PathBuf,
}

impl Managed {
    pub(crate) fn spawn(name: &'static str, dir: &Path, command: &mut Command) -> Managed {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .expect("log file");
        let child = command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Managed {
            child: Some(child),
            name,
            dir: dir.to_path_buf(),
        }
    }

    /// Wait until `ready()`; fail if the process exits first or [`HANG`] passes.
    pub(crate) fn wait_until(&mut self, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + HANG;
        while !ready() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited with {status}; log in {}",
                    self.name,
                    self.dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {HANG:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real `mlflow server` with a sqlite backend and the artifact proxy.
pub struct MlflowServer {
    process: Managed,
    pub port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl MlflowServer {
    /// The `mlflow` executable: `TRADESERVE_MLFLOW` or the venv `scripts/test.sh` installs.
    pub fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("TRADESERVE_MLFLOW") {
            return PathBuf::from(p);
        }
        cache_dir().join("mlflow-venv/bin/mlflow")
    }

    /// Start a fresh server with its state in a new temporary folder.
    pub fn start() -> MlflowServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = MlflowServer::start_in(tmp.path(), free_port());
        s._tmp = Some(tmp);
        s
    }

    /// Start (or restart) a server on `port` with its state in `dir`.
    pub fn start_in(dir: &Path, port: u16) -> MlflowServer {
        let bin = MlflowServer::binary();
        assert!(
            bin.is_file(),
            "{} not found: run scripts/test.sh, which installs MLflow in a cached venv",
            bin.display()
        );
        let mut process = Managed::spawn(
            "mlflow",
            dir,
            Command::new(&bin)
                .args([
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--workers",
                    "1",
                    "--serve-artifacts",
                ])
                .arg("--backend-store-uri")
                .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
                .arg("--artifacts-destination")
                .arg(dir.join("artifacts"))
                .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
        );
        process.wait_until(|| http_ok(port, "/health"));
        MlflowServer {
            process,
            port,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder holding its database and artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kill the server (SIGKILL to its process group) and wait for it.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// KServe's Python model server running `serving/kserve/onnx_server.py` on a models folder:
/// an Open Inference Protocol (v2) server, whose v1 protocol is TF Serving's REST predict API.
/// Every `<role>/<version>` is the model `<role>-<version>`.
pub struct KserveServer {
    process: Managed,
    port: u16,
    models: PathBuf,
    /// Its working folder and log (`kserve.log`).
    _dir: tempfile::TempDir,
}

impl KserveServer {
    /// The venv's Python: `TRADESERVE_KSERVE_PYTHON` or the one `scripts/test.sh` installs.
    pub fn python() -> PathBuf {
        if let Ok(p) = std::env::var("TRADESERVE_KSERVE_PYTHON") {
            return PathBuf::from(p);
        }
        cache_dir().join("kserve-venv/bin/python")
    }

    /// Serve `models` (a folder of `<role>/<version>/model.onnx`) on a free port.
    pub fn start(models: &Path) -> KserveServer {
        KserveServer::start_on(models, free_port())
    }

    /// Start (or restart) on `port`.
    pub fn start_on(models: &Path, port: u16) -> KserveServer {
        let python = KserveServer::python();
        assert!(
            python.is_file(),
            "{} not found: run scripts/test.sh, which installs KServe in a cached venv",
            python.display()
        );
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../serving/kserve/onnx_server.py");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process = Managed::spawn(
            "kserve",
            dir.path(),
            Command::new(&python)
                .arg(script)
                .arg("--models")
                .arg(models)
                .args(["--host", "127.0.0.1", "--http_port", &port.to_string()])
                .args(["--enable_grpc", "false", "--workers", "1"]),
        );
        process.wait_until(|| http_ok(port, "/v2/health/ready"));
        KserveServer {
            process,
            port,
            models: models.to_path_buf(),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn models(&self) -> &Path {
        &self.models
    }

    /// Kill the server (SIGKILL to its process group) and wait for it.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// Copy a model folder to `dst` with one byte of its ONNX file flipped (a corrupt upload).
pub fn corrupt_model_copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create the copy");
    for f in ["MLmodel", "model.onnx", "golden.json"] {
        std::fs::copy(src.join(f), dst.join(f)).expect("copy a model file");
    }
    let mut bytes = std::fs::read(dst.join("model.onnx")).expect("read model.onnx");
    let n = bytes.len();
    bytes[n - 20] ^= 0x55;
    std::fs::write(dst.join("model.onnx"), bytes).expect("write model.onnx");
}

/// A real Kafka-protocol broker: tansu with sqlite storage (survives kill -9 and restart).
pub struct TansuBroker {
    process: Managed,
    pub port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TansuBroker {
    /// The `tansu` executable: `TRADESERVE_TANSU` or the one `scripts/test.sh` builds.
    pub fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("TRADESERVE_TANSU") {
            return PathBuf::from(p);
        }
        cache_dir().join("tansu-0.6.0/bin/tansu")
    }

    /// Start a fresh broker with its storage in a new temporary folder.
    pub fn start() -> TansuBroker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = TansuBroker::start_in(tmp.path(), free_port());
        b._tmp = Some(tmp);
        b
    }

    /// Start (or restart) a broker on `port` with its storage in `dir`.
    pub fn start_in(dir: &Path, port: u16) -> TansuBroker {
        let bin = TansuBroker::binary();
        assert!(
            bin.is_file(),
            "{} not found: run scripts/test.sh, which builds the tansu broker once",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{port}");
        let mut process = Managed::spawn(
            "tansu",
            dir,
            Command::new(&bin)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                // tansu resolves the sqlite path against its working directory (the state dir).
                .args(["--storage-engine", "sqlite://tansu.db"])
                .env("RUST_LOG", "warn"),
        );
        process.wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        TansuBroker {
            process,
            port,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGKILL the broker (its process group) and wait for it.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A real Redis server on a free loopback port, with nothing persisted (a fresh state per test).
pub struct RedisServer {
    _process: Managed,
    pub port: u16,
    _tmp: tempfile::TempDir,
}

impl RedisServer {
    /// The `redis-server` executable: `TRADESERVE_REDIS` or the one on `PATH`.
    pub fn binary() -> PathBuf {
        std::env::var("TRADESERVE_REDIS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("redis-server"))
    }

    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    /// A fresh, empty server on `port` (e.g. to restart one after killing it).
    pub fn start_on(port: u16) -> RedisServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut process = Managed::spawn(
            "redis",
            tmp.path(),
            Command::new(RedisServer::binary()).args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ]),
        );
        process.wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        RedisServer {
            _process: process,
            port,
            _tmp: tmp,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// The `tradeserve` binary running as a child process on `127.0.0.1:0`, with JSON logs read
/// from its stderr. Killed (SIGKILL) and reaped when dropped, unless it already exited.
pub struct ServiceProcess {
    pub child: Child,
    /// `127.0.0.1:PORT` it listens on (from its `listening` log line).
    pub addr: String,
    /// Every JSON log line after `listening`, in order.
    pub logs: std::sync::mpsc::Receiver<serde_json::Value>,
    /// The log lines up to and including `listening`.
    pub startup_logs: Vec<serde_json::Value>,
}

impl ServiceProcess {
    /// Start `bin serve --listen 127.0.0.1:0` with `envs` (plus JSON logs at info level) and
    /// wait for it to listen.
    pub fn start(bin: &str, envs: &[(&str, String)]) -> ServiceProcess {
        ServiceProcess::start_with(bin, &[], envs)
    }

    /// [`Self::start`] with more arguments after `serve --listen 127.0.0.1:0` (e.g.
    /// `--config FILE`).
    pub fn start_with(bin: &str, args: &[&str], envs: &[(&str, String)]) -> ServiceProcess {
        use std::io::{BufRead, BufReader};
        let mut command = Command::new(bin);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("TRADESERVE_SERVER__LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // A deadline that only catches a hang (the 40 ms default is about a release build
            // on a quiet machine, these are debug builds on any machine); a test about the
            // deadline passes its own in `envs`.
            .env(
                "TRADESERVE_SERVER__REQUEST_DEADLINE",
                format!("{}s", HANG.as_secs()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start tradeserve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // From here on the child is owned by `ServiceProcess`, whose Drop kills and reaps it.
        let mut service = ServiceProcess {
            child,
            addr: String::new(),
            logs: rx,
            startup_logs: Vec::new(),
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let deadline = Instant::now() + HANG;
        loop {
            let v = service
                .logs
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("no 'listening' log line");
            service.startup_logs.push(v.clone());
            if v["fields"]["message"] == "listening" {
                let addr = v["fields"]["addr"].as_str().expect("addr").to_owned();
                assert!(
                    addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
                    "{addr}"
                );
                service.addr = addr;
                return service;
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // Stop by PID if a test failed before its planned shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a command to completion and fail the test, with its stderr, unless it succeeded.
pub fn run_ok(command: &mut Command) -> std::process::Output {
    let out = command.output().expect("start the command");
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Python of the test harness's venv (with `mmh3`, `onnx`, `onnxruntime`):
/// `TRADESERVE_PYTHON` or the one `scripts/test.sh` builds.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("TRADESERVE_PYTHON") {
        return PathBuf::from(p);
    }
    cache_dir().join("train-venv/bin/python")
}

/// A decision event with fixed, valid contents, for sink tests.
pub fn sample_event(decision_id: uuid::Uuid, symbol: &str) -> tradeserve_core::DecisionEvent {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use time::OffsetDateTime;
    use tradeserve_core::decision::{FeatureValues, RegimeProbabilities, StrategyWeights};
    use tradeserve_core::types::{Action, Symbol};

    tradeserve_core::DecisionEvent {
        schema_version: 1,
        event_type: tradeserve_core::decision::DecisionEventType::TradingDecision,
        timestamp: OffsetDateTime::UNIX_EPOCH,
        decision_id,
        symbol: Symbol::parse(symbol).expect("a valid test symbol"),
        action: Action::Buy,
        quantity: 10,
        confidence: 0.5,
        regime_probs: RegimeProbabilities {
            bull: 0.5,
            bear: 0.25,
            sideways: 0.25,
            entropy: 0.9,
        },
        strategy_weights: StrategyWeights {
            bull_specialist: 1.0,
            bear_specialist: 0.0,
            sideways_specialist: 0.0,
        },
        features: FeatureValues {
            features: [0.0; 12],
            hit_rates: [0.5; 3],
        },
        features_as_of: OffsetDateTime::UNIX_EPOCH,
        price: 100.0,
        strategy_override: None,
        risk_checks: None,
        risk_warnings: vec![],
        approved: true,
        model_versions: Arc::new(BTreeMap::new()),
        experiment: None,
        rollout: None,
        explanation: None,
        latency_ms: 0.1,
        client_id: None,
        actor: None,
        client_order_id: None,
    }
}

fn schema(file: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("read the schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

/// The published decision-event JSON Schema (`schemas/decision_event.schema.json`), compiled.
pub fn event_schema() -> jsonschema::Validator {
    schema("decision_event.schema.json")
}

/// The published shadow-result JSON Schema (`schemas/shadow_event.schema.json`), compiled.
pub fn shadow_event_schema() -> jsonschema::Validator {
    schema("shadow_event.schema.json")
}

/// The published control-event JSON Schema (`schemas/control_event.schema.json`), compiled.
pub fn control_event_schema() -> jsonschema::Validator {
    schema("control_event.schema.json")
}

/// The published live-bar JSON Schema (`schemas/bar.schema.json`), compiled.
pub fn bar_schema() -> jsonschema::Validator {
    schema("bar.schema.json")
}

/// One record read back from a topic: its key and its JSON value.
pub struct TopicRecord {
    pub key: Vec<u8>,
    pub event: serde_json::Value,
}

impl TopicRecord {
    pub fn decision_id(&self) -> String {
        self.event["decision_id"]
            .as_str()
            .expect("decision_id")
            .to_owned()
    }
}

/// Read partitions `0..partitions` of `topic` from the beginning (no consumer group join),
/// until `done` says so after a record (or [`HANG`] passes: the records so far).
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    mut done: impl FnMut(&TopicRecord) -> bool,
) -> Vec<TopicRecord> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tradeserve-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    while start.elapsed() < HANG {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let record = TopicRecord {
                key: m.key().unwrap_or_default().to_vec(),
                event: serde_json::from_slice(m.payload().unwrap_or_default())
                    .expect("a JSON event"),
            };
            let stop = done(&record);
            out.push(record);
            if stop {
                break;
            }
        }
    }
    out
}

/// Decision ids that `clients` keep-alive clients, each sending predictions back to back over
/// raw HTTP/1.1, received (200 or 403) until the server went away (for kill -9 tests).
pub fn hammer(addr: &str, clients: usize) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    use std::io::{Read, Write};
    (0..clients)
        .map(|i| {
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                    return got;
                };
                let body = format!(r#"{{"symbol":"{}"}}"#, ["AAPL", "MSFT", "NVDA"][i % 3]);
                let bytes = format!(
                    "POST /api/v1/predict HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes();
                loop {
                    if s.write_all(&bytes).is_err() {
                        return got;
                    }
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read one response (head + content-length body), or stop at EOF.
                    let complete = loop {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => break None,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len: usize = head
                                .to_ascii_lowercase()
                                .lines()
                                .find_map(|l| {
                                    l.strip_prefix("content-length: ")
                                        .map(|v| v.trim().parse().expect("content-length"))
                                })
                                .expect("a content-length header");
                            if body.len() >= len {
                                break Some((head[9..12].to_owned(), body[..len].to_owned()));
                            }
                        }
                    };
                    let Some((status, body)) = complete else {
                        return got;
                    };
                    if status == "200" || status == "403" {
                        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON decision");
                        got.push(v["decision_id"].as_str().expect("decision_id").to_owned());
                    }
                }
            })
        })
        .collect()
}

/// A small tmpfs mounted for one test (a real filesystem that fills up: `write` fails with
/// ENOSPC), unmounted when dropped. Needs root, as `scripts/test.sh` and CI run.
pub struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// Mount a tmpfs of `size` (e.g. `"256k"`).
    pub fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount")
            .success();
        assert!(
            ok,
            "mounting a tmpfs needs root (scripts/test.sh runs as root)"
        );
        SmallDisk(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Give it room: remount with `size`.
    pub fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0.path())
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "remount failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// `BIN risk rebuild-shared ARGS --by ci --reason test --write` on the shared risk ledger at
/// `redis_url` under `prefix` (`--flat`: a new, empty ledger, which every replica needs before
/// it approves an order); its JSON output. Fails the test when the command fails.
pub fn rebuild_shared_ledger(
    bin: &str,
    redis_url: &str,
    prefix: &str,
    args: &[&str],
) -> serde_json::Value {
    let out = Command::new(bin)
        .args(["risk", "rebuild-shared"])
        .args(args)
        .args(["--by", "ci", "--reason", "test", "--write"])
        .env("TRADESERVE_LEDGER__STORE", "redis")
        .env("TRADESERVE_LEDGER__REDIS_URL", redis_url)
        .env("TRADESERVE_LEDGER__REDIS_PREFIX", prefix)
        .output()
        .expect("run rebuild-shared");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("rebuild-shared prints JSON")
}
