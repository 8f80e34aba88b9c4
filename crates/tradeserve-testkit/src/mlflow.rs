//! A real MLflow tracking server and model registry (from the cached virtualenv), on a free
//! loopback port with its store in a temporary folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Managed, cache_dir, free_port, http_ok};

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
