//! The gRPC listener (`server.grpc_listen`, off by default): the native `tradeserve.v1`
//! services ([`decisions`], [`control`]), the Open Inference Protocol ([`oip`],
//! [`ensemble`]), the standard health service (SERVING while `/health/ready` is 200) and
//! server reflection — with the REST API's keys and roles, admission limit, deadline, audit
//! and Kafka records, TLS certificates and response metrics (`protocol="grpc"`). The
//! connections themselves are [`tradeserve_transport::h2`]'s.

pub mod call;
pub mod control;
pub mod convert;
pub mod decisions;
pub mod ensemble;
pub mod health;
pub mod oip;
pub mod status;
pub mod tensors;

use std::sync::Arc;

use tradeserve_grpc::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use tradeserve_grpc::tradeserve::v1::control_server::ControlServer;
use tradeserve_grpc::tradeserve::v1::decisions_server::DecisionsServer;

use crate::state::AppState;

/// The largest Open Inference Protocol message accepted: a role's batch of up to 1,024 rows
/// (the native services take REST's `server.body_limit_bytes`).
const MAX_OIP_MESSAGE: usize = 1024 * 1024;

/// Every gRPC service, as one router; and the health service's status keeper (stop it with
/// the listener).
pub fn router(
    state: &Arc<AppState>,
) -> Result<(axum::Router, health::Health), tonic_reflection::server::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tradeserve_grpc::DESCRIPTORS)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let body_limit = state.body.bytes;
    let decisions = DecisionsServer::new(decisions::DecisionService {
        state: Arc::clone(state),
    })
    .max_decoding_message_size(body_limit);
    let control = ControlServer::new(control::ControlService {
        state: Arc::clone(state),
    })
    .max_decoding_message_size(body_limit);
    let inference = GrpcInferenceServiceServer::new(oip::InferenceService {
        state: Arc::clone(state),
    })
    .max_decoding_message_size(MAX_OIP_MESSAGE);
    let routes = tonic::service::Routes::new(decisions)
        .add_service(control)
        .add_service(inference)
        .add_service(health_service)
        .add_service(reflection)
        .prepare();
    let health = health::Health::start(state, health);
    Ok((routes.into_axum_router(), health))
}
