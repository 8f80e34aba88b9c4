//! A KServe model server (Open Inference Protocol REST) serving ONNX models, and a way to
//! corrupt a model copy for the tests that must see one refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Managed, cache_dir, free_port, http_ok};

/// KServe's Python model server running `serving/kserve/onnx_server.py` on a models folder:
/// an Open Inference Protocol (v2) server, whose v1 protocol is TF Serving's REST predict API.
/// Every `<role>/<version>` is the model `<role>-<version>`.
pub struct KserveServer {
    process: Managed,
    port: u16,
    /// Its gRPC port, when started with gRPC.
    grpc_port: Option<u16>,
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
        KserveServer::start_with(models, port, None)
    }

    /// Serve `models` over REST and the protocol's gRPC binding, on free ports.
    pub fn start_grpc(models: &Path) -> KserveServer {
        KserveServer::start_with(models, free_port(), Some(free_port()))
    }

    /// Start (or restart) on `port`, with gRPC on `grpc_port` when given.
    pub fn start_with(models: &Path, port: u16, grpc_port: Option<u16>) -> KserveServer {
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
                .args(match grpc_port {
                    Some(g) => ["--enable_grpc", "true", "--grpc_port", &g.to_string()]
                        .map(String::from)
                        .to_vec(),
                    None => vec!["--enable_grpc".into(), "false".into()],
                })
                .args(["--workers", "1"]),
        );
        process.wait_until(|| http_ok(port, "/v2/health/ready"));
        if let Some(g) = grpc_port {
            process.wait_until(|| std::net::TcpStream::connect(("127.0.0.1", g)).is_ok());
        }
        KserveServer {
            process,
            port,
            grpc_port,
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

    /// `http://127.0.0.1:PORT` of its gRPC server (started with [`Self::start_grpc`]).
    pub fn grpc_url(&self) -> String {
        let port = self.grpc_port.expect("a KServe started with gRPC");
        format!("http://127.0.0.1:{port}")
    }

    pub fn grpc_port(&self) -> Option<u16> {
        self.grpc_port
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
