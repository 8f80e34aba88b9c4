//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService/ModelInfer`, as
//! KServe's model server, Triton and MLServer serve it): the rows as one FP32 tensor
//! `[n, width]` in `raw_input_contents` (little-endian, as Triton's clients send it), answered
//! with three probabilities per row in `raw_output_contents` or typed `contents` (FP32 or
//! FP64). Readiness is `ModelReady`.

use std::time::Instant;

use tradeserve_core::error::ModelError;
use tradeserve_core::model_set::{BackendInfo, RemoteModel, RemoteRows};
use tradeserve_grpc::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tradeserve_grpc::inference::model_infer_request::InferInputTensor;
use tradeserve_grpc::inference::model_infer_response::InferOutputTensor;
use tradeserve_grpc::inference::{ModelInferRequest, ModelInferResponse, ModelReadyRequest};

use crate::remote::grpc::{GrpcBackend, timed};
use crate::remote::http::{bad_rows, three};
use crate::remote::{ModelStatus, STATUS_TIMEOUT};

/// One version of a model on an OIP gRPC server.
pub struct KserveV2GrpcModel {
    pub backend: GrpcBackend,
    /// The model's name on the server.
    pub name: String,
    /// The version sent in the request (empty: the server's only one).
    pub version: String,
    /// The input tensor's name.
    pub input: String,
    pub info: BackendInfo,
}

impl RemoteModel for KserveV2GrpcModel {
    fn infer_rows(&self, rows: Vec<f32>, width: usize, deadline: Instant) -> RemoteRows {
        if width == 0 || rows.is_empty() || !rows.len().is_multiple_of(width) {
            let e = bad_rows(&rows, width);
            return Box::pin(async move { Err(e) });
        }
        let n = rows.len() / width;
        let request = ModelInferRequest {
            model_name: self.name.clone(),
            model_version: self.version.clone(),
            inputs: vec![InferInputTensor {
                name: self.input.clone(),
                datatype: "FP32".into(),
                shape: vec![n as i64, width as i64],
                ..Default::default()
            }],
            raw_input_contents: vec![rows.iter().flat_map(|v| v.to_le_bytes()).collect()],
            ..Default::default()
        };
        let backend = self.backend.clone();
        Box::pin(async move {
            let mut client = GrpcInferenceServiceClient::new(backend.channel());
            let answer = backend
                .call(deadline, |left| client.model_infer(timed(request, left)))
                .await?
                .into_inner();
            let flat = probabilities(&answer)?;
            if flat.len() != n * 3 {
                return Err(ModelError::BadOutput(flat));
            }
            flat.chunks(3).map(three).collect()
        })
    }

    fn backend(&self) -> &BackendInfo {
        &self.info
    }
}

/// The first output's values as f32: raw (little-endian FP32 or FP64) or typed.
fn probabilities(answer: &ModelInferResponse) -> Result<Vec<f32>, ModelError> {
    let Some(output) = answer.outputs.first() else {
        return Err(ModelError::BadOutput(Vec::new()));
    };
    match answer.raw_output_contents.first() {
        Some(raw) => from_raw(output, raw),
        None => from_contents(output),
    }
}

#[allow(clippy::cast_possible_truncation)] // FP64 probabilities, narrowed as the REST path does
fn from_raw(output: &InferOutputTensor, raw: &[u8]) -> Result<Vec<f32>, ModelError> {
    match output.datatype.as_str() {
        "FP32" if raw.len().is_multiple_of(4) => Ok(raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        "FP64" if raw.len().is_multiple_of(8) => Ok(raw
            .chunks_exact(8)
            .filter_map(|b| <[u8; 8]>::try_from(b).ok())
            .map(|b| f64::from_le_bytes(b) as f32)
            .collect()),
        other => Err(ModelError::Unavailable(format!(
            "an output of {} raw bytes as {other:?}: not FP32 or FP64 probabilities",
            raw.len()
        ))),
    }
}

#[allow(clippy::cast_possible_truncation)]
fn from_contents(output: &InferOutputTensor) -> Result<Vec<f32>, ModelError> {
    let contents = output.contents.clone().unwrap_or_default();
    match output.datatype.as_str() {
        "FP32" => Ok(contents.fp32_contents),
        "FP64" => Ok(contents.fp64_contents.iter().map(|v| *v as f32).collect()),
        other => Err(ModelError::Unavailable(format!(
            "an output of datatype {other:?}: not FP32 or FP64 probabilities"
        ))),
    }
}

/// `ModelReady` of one version.
pub async fn status(backend: &GrpcBackend, name: &str, version: &str) -> ModelStatus {
    let mut client = GrpcInferenceServiceClient::new(backend.channel());
    let request = ModelReadyRequest {
        name: name.to_owned(),
        version: version.to_owned(),
    };
    let call = client.model_ready(timed(request, STATUS_TIMEOUT));
    match tokio::time::timeout(STATUS_TIMEOUT, call).await {
        Ok(Ok(r)) if r.get_ref().ready => ModelStatus::Ready,
        Ok(Ok(_)) => ModelStatus::NotReady {
            detail: "ModelReady: false".into(),
        },
        Ok(Err(s)) if s.code() == tonic::Code::NotFound => ModelStatus::Missing,
        Ok(Err(s)) => ModelStatus::Unreachable {
            error: format!("{} (gRPC): {:?}: {}", backend.url(), s.code(), s.message()),
        },
        Err(_) => ModelStatus::Unreachable {
            error: format!(
                "{} (gRPC): no answer within {STATUS_TIMEOUT:?}",
                backend.url()
            ),
        },
    }
}
