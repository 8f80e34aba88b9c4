//! The Open Inference Protocol (KServe v2) REST client: `POST
//! {url}/v2/models/{model}[/versions/{version}]/infer` with one FP32 tensor of shape
//! `[1, width]`, answered with an FP32 tensor of three probabilities. Served by KServe's model
//! server, MLServer, Triton and TorchServe.
//!
//! One pooled keep-alive client per backend; every call is bounded by the request's
//! remaining deadline (waiting for a slot included) and by `max_in_flight` calls at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tradeserve_core::error::ModelError;
use tradeserve_core::model_set::{BackendInfo, RemoteCall, RemoteModel};
use tradeserve_core::types::Role;

/// `[models.kserve_v2]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KserveV2Config {
    /// Base URL of the server, e.g. `http://127.0.0.1:8085`.
    pub url: String,
    /// The model's name on the server: `{role}`, `{name}` (the registry name,
    /// `tradeserve.<role>`) and `{version}` are replaced.
    pub model: String,
    /// `true`: the version goes in the path (`/versions/{version}/infer`: MLServer, Triton);
    /// `false`: the server has no versioned path (KServe 0.21), so `model` names the version.
    pub versioned: bool,
    /// Name of the input tensor.
    pub input: String,
    /// Calls in flight at once to this server; more wait for a slot within their deadline.
    pub max_in_flight: usize,
    /// Connect timeout (a call is bounded by the request deadline as well).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for KserveV2Config {
    fn default() -> Self {
        KserveV2Config {
            url: "http://127.0.0.1:8085".into(),
            model: "{name}".into(),
            versioned: true,
            input: "features".into(),
            max_in_flight: 64,
            connect_timeout: Duration::from_millis(250),
        }
    }
}

impl KserveV2Config {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "models.kserve_v2.url {:?} must start with http:// or https://",
                self.url
            ));
        }
        if self.model.is_empty() || self.input.is_empty() {
            return Err("models.kserve_v2.model and .input must not be empty".into());
        }
        if self.max_in_flight == 0 {
            return Err("models.kserve_v2.max_in_flight must be at least 1".into());
        }
        Ok(())
    }

    /// The model's name on the server for one role's version.
    pub fn model_name(&self, role: Role, version: &str) -> String {
        self.model
            .replace("{role}", role.as_str())
            .replace("{name}", &role.registry_name())
            .replace("{version}", version)
    }
}

/// One Open Inference Protocol server: its client and its in-flight bound.
#[derive(Clone)]
pub struct KserveV2 {
    client: reqwest::Client,
    config: Arc<KserveV2Config>,
    slots: Arc<Semaphore>,
}

impl KserveV2 {
    pub fn new(config: KserveV2Config) -> Result<KserveV2, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        Ok(KserveV2 {
            client,
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            config: Arc::new(config),
        })
    }

    /// The handle of one role's version on this server.
    pub fn model(&self, role: Role, version: &str) -> Arc<dyn RemoteModel> {
        let name = self.config.model_name(role, version);
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
struct InferRequest<'a> {
    inputs: [Tensor<'a>; 1],
}

#[derive(Serialize)]
struct Tensor<'a> {
    name: &'a str,
    shape: [usize; 2],
    datatype: &'static str,
    data: &'a [f32],
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
    fn infer(&self, input: Vec<f32>, deadline: Instant) -> RemoteCall {
        let server = self.server.clone();
        let endpoint = self.info.endpoint.clone();
        Box::pin(async move {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ModelError::Deadline);
            }
            tokio::time::timeout(remaining, call(&server, &endpoint, &input))
                .await
                .map_err(|_| ModelError::Deadline)?
        })
    }

    fn backend(&self) -> &BackendInfo {
        &self.info
    }
}

async fn call(server: &KserveV2, endpoint: &str, input: &[f32]) -> Result<[f32; 3], ModelError> {
    let unavailable = |e: String| ModelError::Unavailable(e);
    let _slot = server
        .slots
        .acquire()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let body = InferRequest {
        inputs: [Tensor {
            name: &server.config.input,
            shape: [1, input.len()],
            datatype: "FP32",
            data: input,
        }],
    };
    let response = server
        .client
        .post(endpoint)
        .json(&body)
        .send()
        .await
        .map_err(|e| unavailable(format!("{endpoint}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        return Err(unavailable(format!("{endpoint}: HTTP {status}: {text}")));
    }
    let answer: InferResponse = response
        .json()
        .await
        .map_err(|e| unavailable(format!("{endpoint}: unreadable answer: {e}")))?;
    let data = answer.outputs.into_iter().next().map(|o| o.data);
    match data.as_deref() {
        Some(&[a, b, c]) => Ok([a, b, c]),
        other => Err(ModelError::BadOutput(other.unwrap_or_default().to_vec())),
    }
}
