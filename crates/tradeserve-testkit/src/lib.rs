//! Test harness for the real services TradeServe talks to.
//!
//! Each server is started on `127.0.0.1` on a free port in its own process group, with its
//! state in a temporary folder, and stopped by that process group (never by name) when the
//! handle drops. Binaries come from the caches `scripts/test.sh` fills; a missing binary is a
//! test failure that says how to install it, never a silent skip.
//!
//! One module per service or job: [`mlflow`], [`kserve`], [`torchserve`], [`tansu`],
//! [`redis_server`], [`prometheus`], [`haproxy`], [`service`] (the `tradeserve` binary itself), [`mirror`]
//! (a remote-model stand-in that injects faults), [`schemas`], [`openapi`] (every response
//! checked against the document), [`raw_http`] (HTTP/1.1 over a bare socket), [`disk`] (a disk that fills up) and [`wait`]; this file keeps
//! what they share (free ports, the cache, the process-group handle).

#![allow(clippy::expect_used, clippy::panic)]

pub mod disk;
pub mod grpc;
pub mod haproxy;
pub mod kserve;
pub mod mirror;
pub mod mlflow;
pub mod openapi;
pub mod prometheus;
pub mod raw_http;
pub mod redis_server;
pub mod schemas;
pub mod service;
pub mod tansu;
pub mod torchserve;
pub mod wait;

pub use disk::SmallDisk;
pub use haproxy::Haproxy;
pub use kserve::{KserveServer, corrupt_model_copy};
pub use mlflow::MlflowServer;
pub use prometheus::{PrometheusServer, quick_rules};
/// The Redis client, for tests that read what the service wrote (the server itself reaches
/// Redis only through `tradeserve-redis`).
pub use redis;
pub use redis_server::RedisServer;
pub use schemas::{
    bar_schema, control_event_schema, event_schema, sample_event, shadow_event_schema,
};
pub use service::{ServiceProcess, hammer, rebuild_shared_ledger};
pub use tansu::{TansuBroker, TopicRecord, read_topic};
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

/// A copy of the bundled models in `dir`/models with `training/degenerate_model.py`'s bad
/// specialists added, one version per (version, kind) of `degraded` (kind `hold` or
/// `contrarian`); returns the folder.
pub fn models_with_degraded(
    repo: &std::path::Path,
    dir: &std::path::Path,
    degraded: &[(&str, &str)],
) -> PathBuf {
    let models = dir.join("models");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(repo.join("models"))
        .arg(&models)
        .status()
        .expect("cp");
    assert!(copied.success(), "copying the bundled models");
    for (version, kind) in degraded {
        run_ok(
            Command::new(python())
                .arg(repo.join("training/degenerate_model.py"))
                .arg("--models")
                .arg(&models)
                .args(["--version", version, "--kind", kind]),
        );
    }
    models
}

/// The Python of the test harness's venv (with `mmh3`, `onnx`, `onnxruntime`):
/// `TRADESERVE_PYTHON` or the one `scripts/test.sh` builds.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("TRADESERVE_PYTHON") {
        return PathBuf::from(p);
    }
    cache_dir().join("train-venv/bin/python")
}
