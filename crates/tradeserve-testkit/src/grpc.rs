//! The gRPC side of a [`ServiceProcess`]: its gRPC listener's address (from the start-up
//! log) and the repository's Python client (`serving/grpc/client.py`, run in the KServe
//! venv, which pins grpcio and grpcio-tools) as a real peer.

use std::path::Path;
use std::process::Command;

use crate::kserve::KserveServer;
use crate::service::ServiceProcess;

/// `127.0.0.1:PORT` of the service's gRPC listener (`server.grpc_listen`).
pub fn address(service: &ServiceProcess) -> String {
    service
        .startup_logs
        .iter()
        .find_map(|v| v["fields"]["grpc"].as_str())
        .expect("the gRPC address in the start-up log (server.grpc_listen set?)")
        .to_owned()
}

/// Run the Python client against `target` with `args`: whether it succeeded, and the JSON it
/// printed (the answer, or the failed call's code, message, reason and field).
pub fn python_client(target: &str, args: &[&str]) -> (bool, serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../serving/grpc/client.py");
    let out = Command::new(KserveServer::python())
        .arg(script)
        .args(["--target", target])
        .args(args)
        .output()
        .expect("run the Python gRPC client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), answer)
}
