//! The gRPC protocols TradeServe speaks, generated at build time from `proto/`:
//! - [`inference`]: the Open Inference Protocol (KServe V2) — served for the ensemble and each
//!   role's model, and called on KServe/Triton model servers;
//! - [`tradeserve::v1`]: the native API, the REST API's predict and control calls as protobuf;
//! - [`torchserve`]: TorchServe's inference API, called on TorchServe.
//!
//! Plus [`DESCRIPTORS`], the encoded descriptor set, for server reflection. Conversions and
//! the services themselves live with their users (the server, the model backends).

/// `inference.GRPCInferenceService` and its messages.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// The native `tradeserve.v1` API.
pub mod tradeserve {
    #[allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("tradeserve.v1");
    }
}

/// `org.pytorch.serve.grpc.inference.InferenceAPIsService`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod torchserve {
    tonic::include_proto!("org.pytorch.serve.grpc.inference");
}

/// The served services' encoded `FileDescriptorSet` (for `grpc.reflection`).
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
