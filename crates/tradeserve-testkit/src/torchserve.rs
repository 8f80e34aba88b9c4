//! TorchServe 0.12 (Java front end, Python workers) started on free loopback ports for the
//! remote-backend tests, with the project's handler and the `torch` stand-in
//! (`serving/torchserve/`), its model store in a temporary folder, stopped by its process
//! group. One TorchServe per machine (its pid file and worker sockets are fixed paths under
//! `/tmp`): every instance holds an exclusive lock on `/tmp/tradeserve-torchserve.lock` for
//! its life, so tests that use it run one at a time, across test binaries too.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::{Managed, cache_dir, free_port, http_ok};

/// A running TorchServe.
pub struct TorchServeServer {
    process: Managed,
    pub inference_port: u16,
    pub management_port: u16,
    /// Its gRPC inference API's port (bound to 127.0.0.1).
    pub grpc_port: u16,
    /// Config, logs and (unless the test owns it) the model store; removed when dropped.
    _dir: tempfile::TempDir,
    store: PathBuf,
    _lock: Flock<File>,
}

/// The repository's `serving/torchserve` folder (handler and `torch` stand-in).
pub fn serving_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../serving/torchserve")
}

impl TorchServeServer {
    /// The venv holding `torchserve` and `torch-model-archiver`: `TRADESERVE_TORCHSERVE_VENV`
    /// or the one `scripts/test.sh` installs.
    pub fn venv() -> PathBuf {
        match std::env::var("TRADESERVE_TORCHSERVE_VENV") {
            Ok(p) => PathBuf::from(p),
            Err(_) => cache_dir().join("torchserve-venv"),
        }
    }

    /// `torch-model-archiver` of that venv.
    pub fn archiver() -> PathBuf {
        TorchServeServer::venv().join("bin/torch-model-archiver")
    }

    /// Start with an empty model store (register models with [`Self::register`]).
    pub fn start() -> TorchServeServer {
        let ports = [free_port(), free_port(), free_port()];
        TorchServeServer::start_on(ports[0], ports[1], ports[2])
    }

    /// Start on given inference, management and metrics ports (a restart keeps its URLs).
    pub fn start_on(inference: u16, management: u16, metrics: u16) -> TorchServeServer {
        TorchServeServer::start_with(inference, management, metrics, None)
    }

    /// Start on given ports with `store` as the model store (one the test owns, so it
    /// outlives a killed server), or a fresh one in the server's own folder. Ready once both
    /// listeners answer: the management API opens after the inference one, and on a busy
    /// machine a registration sent at the first `/ping` was refused.
    pub fn start_with(
        inference: u16,
        management: u16,
        metrics: u16,
        store: Option<&Path>,
    ) -> TorchServeServer {
        let venv = TorchServeServer::venv();
        let bin = venv.join("bin/torchserve");
        assert!(
            bin.is_file(),
            "{} not found: run scripts/test.sh, which installs TorchServe in a cached venv",
            bin.display()
        );
        let file = File::create("/tmp/tradeserve-torchserve.lock").expect("lock file");
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("lock TorchServe for this test");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store.map_or_else(|| dir.path().join("store"), Path::to_path_buf);
        std::fs::create_dir_all(&store).expect("model store");
        let grpc_port = free_port();
        let config = properties([inference, management, metrics, grpc_port], &store);
        std::fs::write(dir.path().join("config.properties"), config).expect("config");
        let path = format!(
            "{}:{}",
            venv.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut process = Managed::spawn(
            "torchserve",
            dir.path(),
            Command::new(&bin)
                .args([
                    "--start",
                    "--ncs",
                    "--foreground",
                    "--ts-config",
                    "config.properties",
                ])
                .env("PATH", path)
                .env("PYTHONPATH", serving_dir())
                .env("LOG_LOCATION", dir.path().join("logs"))
                .env("METRICS_LOCATION", dir.path().join("logs")),
        );
        process.wait_until(|| http_ok(inference, "/ping") && http_ok(management, "/models"));
        TorchServeServer {
            process,
            inference_port: inference,
            management_port: management,
            grpc_port,
            _dir: dir,
            store,
            _lock: lock,
        }
    }

    pub fn inference_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.inference_port)
    }

    pub fn management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.management_port)
    }

    /// Its model store (`.mar` files to register).
    pub fn store(&self) -> PathBuf {
        self.store.clone()
    }

    /// Register `<store>/<mar>` with one worker and wait until it is READY. `Err` carries
    /// TorchServe's answer when it refuses.
    pub fn register(&self, mar: &str, batch_size: usize) -> Result<(), String> {
        let path = format!(
            "/models?url={mar}&initial_workers=1&synchronous=true&batch_size={batch_size}&max_batch_delay=2"
        );
        let (status, body) = request(self.management_port, "POST", &path);
        match status {
            200 => Ok(()),
            _ => Err(format!("HTTP {status}: {body}")),
        }
    }

    /// The management API's answer for `GET path`.
    pub fn management(&self, method: &str, path: &str) -> (u16, String) {
        request(self.management_port, method, path)
    }

    /// Kill TorchServe (SIGKILL to its process group: Java and every worker).
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// One HTTP/1.1 request without a body; the status and the body (read to its
/// Content-Length: TorchServe keeps the connection open whatever the request says).
fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{BufRead, BufReader};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = s.set_read_timeout(Some(Duration::from_secs(180)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let status = line.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// TorchServe's `config.properties`: every listener on 127.0.0.1 (`ports`: inference,
/// management, metrics, gRPC inference), `store` as the model store.
fn properties(ports: [u16; 4], store: &Path) -> String {
    let [inference, management, metrics, grpc_port] = ports;
    format!(
        "inference_address=http://127.0.0.1:{inference}\n\
         management_address=http://127.0.0.1:{management}\n\
         metrics_address=http://127.0.0.1:{metrics}\n\
         grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n\
         grpc_inference_port={grpc_port}\ngrpc_management_port={}\n\
         model_store={}\ndefault_workers_per_model=1\n\
         disable_token_authorization=true\nenable_model_api=true\n\
         install_py_dep_per_model=false\nmetrics_mode=prometheus\n\
         vmargs=-Xmx256m -XX:+UseSerialGC -XX:-UseContainerSupport\n",
        free_port(),
        store.display()
    )
}
