//! Compiles the `.proto` files under `proto/` with protox (a protobuf compiler in Rust: no
//! `protoc` to install) into Rust with prost and tonic, and keeps the encoded descriptor set
//! of the services TradeServe serves, for gRPC server reflection.

use std::path::PathBuf;

use prost::Message as _;

/// Served by TradeServe (and, for the OIP, called on model servers).
const SERVED: [&str; 2] = [
    "inference/grpc_predict_v2.proto",
    "tradeserve/v1/decisions.proto",
];
/// Only called.
const CALLED: [&str; 1] = ["torchserve/inference.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let served = protox::compile(SERVED, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptors.bin"), served.encode_to_vec())?;
    let fds = protox::compile(SERVED.into_iter().chain(CALLED), ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
