//! The gRPC protocols TradeServe speaks, generated at build time from `proto/`:
//! - [`inference`]: the Open Inference Protocol (KServe V2) — served for the ensemble and each
//!   role's model, and called on KServe/Triton model servers;
//! - [`tradeserve::v1`]: the native API, the REST API's predict and control calls as protobuf;
//! - [`torchserve`]: TorchServe's inference API, called on TorchServe.
//!
//! Plus [`DESCRIPTORS`], the encoded descriptor set, for server reflection, and
//! [`rest_status`], the one table from a gRPC code to the REST status it stands for (the
//! server's metrics and the load generator's report count both protocols alike). Conversions
//! and the services themselves live with their users (the server, the model backends).

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

/// The REST status a gRPC code stands for: the inverse of the server's mapping of its REST
/// errors to gRPC codes, for the codes it answers with (a client-side failure, 500).
pub fn rest_status(code: tonic::Code) -> u16 {
    use tonic::Code;
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::OutOfRange => 422,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound | Code::Unimplemented => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Unavailable => 503,
        Code::DeadlineExceeded | Code::Cancelled => 504,
        _ => 500,
    }
}
