//! The Open Inference Protocol (KServe v2) client. REST: `POST
//! {url}/v2/models/{model}[/versions/{version}]/infer` with one FP32 tensor of shape
//! `[1, width]`, answered with an FP32 tensor of three probabilities. Served by KServe's model
//! server, MLServer, Triton and TorchServe. With `protocol = "grpc"`, the same call over the
//! protocol's gRPC binding to `grpc_url` ([`super::kserve_v2_grpc`]).
//!
//! The clients, their in-flight bound and the deadline are [`crate::remote::http`]'s and
//! [`crate::remote::grpc`]'s.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;
use tradeserve_core::bounded::{PositiveDuration, at_least_one_usize};
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};
use tradeserve_core::error::ModelError;
use tradeserve_core::model_set::{BackendInfo, RemoteModel, RemoteRows};
use tradeserve_core::types::Role;

use crate::remote::grpc::{ClientError, GrpcBackend, WireProtocol};
use crate::remote::http::{HttpBackend, bad_rows, three};
use crate::remote::kserve_v2_grpc::{self, KserveV2GrpcModel};
use crate::remote::{ModelStatus, STATUS_TIMEOUT};

/// `[models.kserve_v2]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KserveV2Config {
    /// Base URL of the server's REST API, e.g. `http://127.0.0.1:8085`.
    pub url: String,
    /// `rest` (JSON to `url`) or `grpc` (protobuf over HTTP/2 to `grpc_url`: one connection,
    /// calls multiplexed).
    pub protocol: WireProtocol,
    /// The server's gRPC endpoint, e.g. `http://127.0.0.1:8081` (KServe's default port).
    pub grpc_url: String,
    /// The model's name on the server: `{role}`, `{name}` (the registry name,
    /// `tradeserve.<role>`) and `{version}` are replaced.
    pub model: String,
    /// `true`: the version goes in the path (`/versions/{version}/infer`: MLServer, Triton);
    /// `false`: the server has no versioned path (KServe 0.21), so `model` names the version.
    pub versioned: bool,
    /// Name of the input tensor.
    pub input: String,
    /// Calls in flight at once to this server; more wait for a slot within their deadline.
    pub max_in_flight: NonZeroUsize,
    /// Connect timeout (a call is bounded by the request deadline as well).
    pub connect_timeout: PositiveDuration,
}

impl Default for KserveV2Config {
    fn default() -> Self {
        KserveV2Config {
            url: "http://127.0.0.1:8085".into(),
            protocol: WireProtocol::Rest,
            grpc_url: "http://127.0.0.1:8081".into(),
            model: "{name}".into(),
            versioned: true,
            input: "features".into(),
            max_in_flight: at_least_one_usize(64),
            connect_timeout: PositiveDuration::millis(250),
        }
    }
}

impl KserveV2Config {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.input.is_empty() {
            return Err("models.kserve_v2.input must not be empty".into());
        }
        if self.protocol == WireProtocol::Grpc {
            super::validate_grpc_url("models.kserve_v2", &self.grpc_url)?;
        }
        super::validate_common("models.kserve_v2", &self.url, &self.model)
    }

    /// The model's name on the server for one role's version.
    pub fn model_name(&self, role: Role, version: &str) -> String {
        super::model_name(&self.model, role, version)
    }
}

/// One Open Inference Protocol server.
#[derive(Clone)]
pub struct KserveV2 {
    http: HttpBackend,
    /// The gRPC channel, when `protocol = "grpc"`.
    grpc: Option<GrpcBackend>,
    config: Arc<KserveV2Config>,
}

impl KserveV2 {
    pub fn new(config: KserveV2Config) -> Result<KserveV2, ClientError> {
        let timeout = config.connect_timeout.get();
        let grpc = GrpcBackend::for_protocol(
            config.protocol,
            &config.grpc_url,
            config.max_in_flight,
            timeout,
        )?;
        Ok(KserveV2 {
            http: HttpBackend::new(config.max_in_flight, timeout)?,
            grpc,
            config: Arc::new(config),
        })
    }

    /// The version sent to a gRPC server (empty when it has no versions).
    fn grpc_version<'a>(&self, version: &'a str) -> &'a str {
        if self.config.versioned { version } else { "" }
    }

    /// The version's readiness: `GET /v2/models/{model}[/versions/{v}]/ready` (200 and not
    /// `"ready": false` is ready; 404 is missing).
    pub async fn status(&self, role: Role, version: &str) -> ModelStatus {
        let name = self.config.model_name(role, version);
        if let Some(grpc) = &self.grpc {
            return kserve_v2_grpc::status(grpc, &name, self.grpc_version(version)).await;
        }
        let base = self.config.url.trim_end_matches('/');
        let url = match self.config.versioned {
            true => format!("{base}/v2/models/{name}/versions/{version}/ready"),
            false => format!("{base}/v2/models/{name}/ready"),
        };
        match self.http.status(&url, STATUS_TIMEOUT).await {
            Ok((200, body)) if body.get("ready") != Some(&serde_json::Value::Bool(false)) => {
                ModelStatus::Ready
            }
            Ok((404, _)) => ModelStatus::Missing,
            Ok((code, body)) => ModelStatus::NotReady {
                detail: format!("HTTP {code}: {body}"),
            },
            Err(error) => ModelStatus::Unreachable { error },
        }
    }

    /// The handle of one role's version on this server.
    pub fn model(&self, role: Role, version: &str) -> Arc<dyn RemoteModel> {
        let name = self.config.model_name(role, version);
        if let Some(grpc) = &self.grpc {
            return Arc::new(KserveV2GrpcModel {
                backend: grpc.clone(),
                version: self.grpc_version(version).to_owned(),
                input: self.config.input.clone(),
                info: BackendInfo {
                    kind: "kserve_v2",
                    endpoint: format!("{}/inference.GRPCInferenceService/ModelInfer", grpc.url()),
                    model: name.clone(),
                },
                name,
            });
        }
        let base = self.config.url.trim_end_matches('/');
        let endpoint = match self.config.versioned {
            true => format!("{base}/v2/models/{name}/versions/{version}/infer"),
            false => format!("{base}/v2/models/{name}/infer"),
        };
        Arc::new(KserveV2Model {
            server: self.clone(),
            info: BackendInfo {
                kind: "kserve_v2",
                endpoint,
                model: name,
            },
        })
    }
}

struct KserveV2Model {
    server: KserveV2,
    info: BackendInfo,
}

#[derive(Serialize)]
struct InferRequest {
    inputs: [Tensor; 1],
}

#[derive(Serialize)]
struct Tensor {
    name: String,
    shape: [usize; 2],
    datatype: &'static str,
    data: Vec<f32>,
}

#[derive(Deserialize)]
struct InferResponse {
    outputs: Vec<Output>,
}

#[derive(Deserialize)]
struct Output {
    data: Vec<f32>,
}

impl RemoteModel for KserveV2Model {
    fn infer_rows(&self, rows: Vec<f32>, width: usize, deadline: Instant) -> RemoteRows {
        if width == 0 || rows.is_empty() || !rows.len().is_multiple_of(width) {
            let e = bad_rows(&rows, width);
            return Box::pin(async move { Err(e) });
        }
        let n = rows.len() / width;
        let http = self.server.http.clone();
        let endpoint = self.info.endpoint.clone();
        let body = InferRequest {
            inputs: [Tensor {
                name: self.server.config.input.clone(),
                shape: [n, width],
                datatype: "FP32",
                data: rows,
            }],
        };
        Box::pin(async move {
            let answer: InferResponse = http.post(&endpoint, &body, deadline).await?;
            let flat = answer.outputs.into_iter().next().map(|o| o.data);
            let flat = flat.unwrap_or_default();
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
