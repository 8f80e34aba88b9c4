//! TorchServe's gRPC inference API (`org.pytorch.serve.grpc.inference.InferenceAPIsService/
//! Predictions`, the front end's `grpc_inference_port`, 7070 by default): the rows as the
//! JSON body the REST path sends (`{"data": [[x0, ...]]}`) in the request's `data` input,
//! answered `[[p0, p1, p2], ...]` by the project's handler in `prediction`.

use std::time::Instant;

use tradeserve_core::error::ModelError;
use tradeserve_core::model_set::{BackendInfo, RemoteModel, RemoteRows};
use tradeserve_grpc::torchserve::PredictionsRequest;
use tradeserve_grpc::torchserve::inference_ap_is_service_client::InferenceApIsServiceClient;

use crate::remote::grpc::{GrpcBackend, timed};
use crate::remote::http::{bad_rows, rows_of_three, split_rows};

/// One version of a model on TorchServe's gRPC API.
pub struct TorchServeGrpcModel {
    pub backend: GrpcBackend,
    pub name: String,
    pub version: String,
    pub info: BackendInfo,
}

impl RemoteModel for TorchServeGrpcModel {
    fn infer_rows(&self, rows: Vec<f32>, width: usize, deadline: Instant) -> RemoteRows {
        let Some(data) = split_rows(&rows, width) else {
            let e = bad_rows(&rows, width);
            return Box::pin(async move { Err(e) });
        };
        let n = data.len();
        let body = match serde_json::to_vec(&serde_json::json!({ "data": data })) {
            Ok(b) => b,
            Err(e) => {
                let e = ModelError::Unavailable(format!("cannot encode the rows: {e}"));
                return Box::pin(async move { Err(e) });
            }
        };
        let request = PredictionsRequest {
            model_name: self.name.clone(),
            model_version: self.version.clone(),
            input: [("data".to_owned(), body)].into(),
        };
        let backend = self.backend.clone();
        Box::pin(async move {
            let mut client = InferenceApIsServiceClient::new(backend.channel());
            let answer = backend
                .call(deadline, |left| client.predictions(timed(request, left)))
                .await?
                .into_inner();
            let rows: Vec<Vec<f32>> = serde_json::from_slice(&answer.prediction).map_err(|e| {
                let text: String = String::from_utf8_lossy(&answer.prediction)
                    .chars()
                    .take(200)
                    .collect();
                ModelError::Unavailable(format!(
                    "{} (gRPC): unreadable prediction ({e}): {text}",
                    backend.url()
                ))
            })?;
            rows_of_three(&rows, n)
        })
    }

    fn backend(&self) -> &BackendInfo {
        &self.info
    }
}
