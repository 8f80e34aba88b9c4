//! `inference.GRPCInferenceService` (the Open Inference Protocol): the ensemble as the model
//! `tradeserve` — a symbol (BYTES) and an optional RFC 3339 timestamp in, the decision out,
//! through the same path as `Decisions/Predict` (role trader) — and each role's model of the
//! champion under the role's name (`regime_detector`, …), its input tensor in and its three
//! probabilities out, for clients that want them raw (any role). Liveness is public,
//! readiness follows `/health/ready`'s access, metadata any role.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tradeserve_auth::Access;
use tradeserve_core::model_set::LoadedModel;
use tradeserve_core::types::Role;
use tradeserve_grpc::inference as oip;
use tradeserve_grpc::inference::grpc_inference_service_server::GrpcInferenceService;
use tradeserve_grpc::inference::model_metadata_response::TensorMetadata;

use crate::metrics::Route;
use crate::routes::admit::Arrival;
use crate::state::AppState;

use super::{call, ensemble, status, tensors};

/// The ensemble's model name.
pub const ENSEMBLE: &str = "tradeserve";

/// The OIP service.
pub struct InferenceService {
    pub state: Arc<AppState>,
}

/// What a model name stands for.
enum Named {
    Ensemble,
    Role(Role),
}

fn named(name: &str) -> Result<Named, Status> {
    if name == ENSEMBLE {
        return Ok(Named::Ensemble);
    }
    Role::parse(name).map(Named::Role).ok_or_else(|| {
        status::with_info(
            tonic::Code::NotFound,
            "unknown_model",
            &format!("no model {name:?}: {ENSEMBLE} or a role (regime_detector, meta_controller, bull_specialist, bear_specialist, sideways_specialist)"),
            None,
            None,
        )
    })
}

impl InferenceService {
    /// The champion's model of `role`, when models are loaded.
    fn role_model(&self, role: Role) -> Result<LoadedModel, Status> {
        let champion = self.state.control.champion().ok_or_else(not_ready)?;
        champion
            .models()
            .into_iter()
            .find(|m| m.info.role == role)
            .cloned()
            .ok_or_else(not_ready)
    }

    /// The ensemble's version: every role's, `role:version` joined by commas.
    fn ensemble_version(&self) -> Result<String, Status> {
        let versions = self.state.control.champion_versions();
        if versions.is_empty() {
            return Err(not_ready());
        }
        Ok(versions
            .iter()
            .map(|(r, v)| format!("{r}:{v}"))
            .collect::<Vec<_>>()
            .join(","))
    }

    fn version_of(&self, name: &str) -> Result<String, Status> {
        match named(name)? {
            Named::Ensemble => self.ensemble_version(),
            Named::Role(role) => Ok(self.role_model(role)?.info.version),
        }
    }
}

fn not_ready() -> Status {
    status::with_info(
        tonic::Code::Unavailable,
        "not_ready",
        "models are not loaded",
        None,
        None,
    )
}

fn tensor(name: &str, datatype: &str, shape: &[i64]) -> TensorMetadata {
    TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<oip::ServerLiveRequest>,
    ) -> Result<Response<oip::ServerLiveResponse>, Status> {
        Ok(Response::new(oip::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        request: Request<oip::ServerReadyRequest>,
    ) -> Result<Response<oip::ServerReadyResponse>, Status> {
        call::authorize(&self.state, request.metadata(), Access::Ops).await?;
        Ok(Response::new(oip::ServerReadyResponse {
            ready: self.state.is_ready().is_ok(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<oip::ModelReadyRequest>,
    ) -> Result<Response<oip::ModelReadyResponse>, Status> {
        call::authorize(&self.state, request.metadata(), Access::Ops).await?;
        let r = request.get_ref();
        let ready = match self.version_of(&r.name) {
            Ok(v) => self.state.is_ready().is_ok() && (r.version.is_empty() || r.version == v),
            Err(e) if e.code() == tonic::Code::NotFound => return Err(e),
            Err(_) => false,
        };
        Ok(Response::new(oip::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        request: Request<oip::ServerMetadataRequest>,
    ) -> Result<Response<oip::ServerMetadataResponse>, Status> {
        call::authorize(&self.state, request.metadata(), Access::Read).await?;
        Ok(Response::new(oip::ServerMetadataResponse {
            name: ENSEMBLE.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<oip::ModelMetadataRequest>,
    ) -> Result<Response<oip::ModelMetadataResponse>, Status> {
        call::authorize(&self.state, request.metadata(), Access::Read).await?;
        let name = request.get_ref().name.clone();
        let (platform, inputs, outputs) = match named(&name)? {
            Named::Ensemble => (
                "tradeserve_ensemble".to_owned(),
                ensemble::INPUTS
                    .iter()
                    .map(|(n, d)| tensor(n, d, &[1]))
                    .collect(),
                ensemble::outputs(),
            ),
            Named::Role(role) => {
                let width = i64::try_from(self.role_model(role)?.input_means.len()).unwrap_or(-1);
                (
                    "onnx".to_owned(),
                    vec![tensor("input", "FP32", &[-1, width])],
                    vec![tensor("probabilities", "FP32", &[-1, 3])],
                )
            }
        };
        let versions = vec![self.version_of(&name)?];
        Ok(Response::new(oip::ModelMetadataResponse {
            name,
            versions,
            platform,
            inputs,
            outputs,
        }))
    }

    async fn model_infer(
        &self,
        request: Request<oip::ModelInferRequest>,
    ) -> Result<Response<oip::ModelInferResponse>, Status> {
        let arrival = Arrival::now();
        let (result, route) = match named(&request.get_ref().model_name) {
            Ok(Named::Ensemble) => (
                ensemble::infer(&self.state, request, arrival).await,
                Route::Predict,
            ),
            Ok(Named::Role(role)) => (self.infer_role(role, request).await, Route::Other),
            Err(e) => (Err(e), Route::Other),
        };
        call::observe(&self.state, route, arrival, &result);
        result.map(Response::new)
    }
}

/// Rows a role's model runs in one call, at most.
const MAX_ROWS: usize = 1024;

impl InferenceService {
    /// A role's model on the caller's rows: `input` (FP32 or FP64, `[n, width]`) in,
    /// `probabilities` (FP32, `[n, 3]`) out.
    async fn infer_role(
        &self,
        role: Role,
        request: Request<oip::ModelInferRequest>,
    ) -> Result<oip::ModelInferResponse, Status> {
        call::authorize(&self.state, request.metadata(), Access::Read).await?;
        let model = self.role_model(role)?;
        let r = request.get_ref();
        let width = model.input_means.len();
        let (t, raw) = tensors::input(r, "input")
            .ok_or_else(|| status::invalid("input", "the input tensor \"input\" is required"))?;
        if t.shape.len() != 2 || usize::try_from(t.shape[1]).ok() != Some(width) {
            return Err(status::invalid(
                "input",
                format!("input must have shape [n, {width}], not {:?}", t.shape),
            ));
        }
        let rows = tensors::floats(t, raw)?;
        let n = rows.len() / width.max(1);
        if n == 0 || n > MAX_ROWS {
            return Err(status::invalid(
                "input",
                format!("input must have 1 to {MAX_ROWS} rows, not {n}"),
            ));
        }
        let engine = Arc::clone(&model.model);
        let out = tokio::task::spawn_blocking(move || engine.predict_batch(&rows, width))
            .await
            .map_err(|e| Status::internal(format!("inference task failed: {e}")))?
            .map_err(|e| {
                status::with_info(
                    tonic::Code::Unavailable,
                    "model_failure",
                    &e.to_string(),
                    None,
                    None,
                )
            })?;
        let probabilities = oip::InferTensorContents {
            fp32_contents: out.iter().flatten().copied().collect(),
            ..Default::default()
        };
        Ok(oip::ModelInferResponse {
            model_name: r.model_name.clone(),
            model_version: model.info.version.clone(),
            id: r.id.clone(),
            parameters: Default::default(),
            outputs: vec![tensors::output(
                "probabilities",
                "FP32",
                vec![i64::try_from(n).unwrap_or(i64::MAX), 3],
                probabilities,
            )],
            raw_output_contents: Vec::new(),
        })
    }
}
