//! Test harness for the real services TradeServe talks to.
//!
//! Each server is started on `127.0.0.1` on a free port in its own process group, with its
//! state in a temporary folder, and stopped by that process group (never by name) when the
//! handle drops. Binaries come from the caches `scripts/test.sh` fills; a missing binary is a
//! test failure that says how to install it, never a silent skip.

#![allow(clippy::expect_used, clippy::panic)]

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

fn http_ok(port: u16, path: &str) -> bool {
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

/// A real `mlflow server` with a sqlite backend and the artifact proxy.
pub struct MlflowServer {
    child: Option<Child>,
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
        let dir = tmp.path().to_path_buf();
        let mut s = MlflowServer::start_in(&dir, free_port());
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
        let log = std::fs::File::create(dir.join(format!("mlflow-{port}.log"))).expect("log file");
        let child = Command::new(&bin)
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
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let mut server = MlflowServer {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            _tmp: None,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !http_ok(port, "/health") {
            if let Some(c) = server.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "mlflow server exited with {status}; log in {}",
                        dir.display()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server not ready after 90 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
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
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Hand over the temporary folder, so a restarted server can reuse the state.
    pub fn into_parts(mut self) -> (Option<tempfile::TempDir>, u16) {
        self.kill();
        (self._tmp.take(), self.port)
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.kill();
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
    child: Option<Child>,
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tansu.log"))
            .expect("log file");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
            ])
            // tansu resolves the sqlite path against its working directory.
            .arg("sqlite://tansu.db")
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start tansu");
        let mut broker = TansuBroker {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            _tmp: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(c) = broker.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("tansu exited with {status}; log in {}", dir.display());
                }
            }
            assert!(Instant::now() < deadline, "tansu not listening after 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGKILL the broker (its process group) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A decision event with fixed, valid contents, for sink tests.
pub fn sample_event(decision_id: uuid::Uuid, symbol: &str) -> tradeserve_core::DecisionEvent {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use time::OffsetDateTime;
    use tradeserve_core::decision::{
        FeatureValues, RegimeProbabilities, RiskCheckFlags, StrategyWeights,
    };
    use tradeserve_core::types::{Action, Symbol};

    tradeserve_core::DecisionEvent {
        schema_version: 1,
        event_type: "trading_decision",
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
        risk_checks: RiskCheckFlags(None),
        risk_warnings: vec![],
        approved: true,
        model_versions: Arc::new(BTreeMap::new()),
        experiment: None,
        rollout: None,
        shadow: None,
        latency_ms: 0.1,
        client_id: None,
    }
}
