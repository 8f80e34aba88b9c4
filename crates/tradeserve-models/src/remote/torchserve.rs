//! TorchServe: its inference API (`POST {inference_url}/predictions/{model}/{version}` with
//! `{"data": [[x0, ...]]}`, answered `[[p0, p1, p2]]` by the handler the project ships,
//! `serving/torchserve/handler.py`) and its management API's model status, which says whether
//! a version has a READY worker (TorchServe's `/ping` stays Healthy while a worker crash-loops).
//!
//! The client, its in-flight bound and the deadline are [`crate::remote::http`]'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tradeserve_core::model_set::{BackendInfo, RemoteCall, RemoteModel};
use tradeserve_core::types::Role;

use crate::remote::http::{HttpBackend, three};

/// `[models.torchserve]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TorchServeConfig {
    /// The inference API, e.g. `http://127.0.0.1:8080` (TorchServe's default port, which is
    /// also TradeServe's: move one of them).
    pub inference_url: String,
    /// The management API, e.g. `http://127.0.0.1:8081`.
    pub management_url: String,
    /// The model's name on the server: `{role}`, `{name}` and `{version}` are replaced.
    pub model: String,
    /// Calls in flight at once; more wait for a slot within their deadline.
    pub max_in_flight: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for TorchServeConfig {
    fn default() -> Self {
        TorchServeConfig {
            inference_url: "http://127.0.0.1:8080".into(),
            management_url: "http://127.0.0.1:8081".into(),
            model: "{role}".into(),
            max_in_flight: 64,
            connect_timeout: Duration::from_millis(250),
        }
    }
}

impl TorchServeConfig {
    pub fn validate(&self) -> Result<(), String> {
        super::validate_common(
            "models.torchserve",
            &self.inference_url,
            &self.model,
            self.max_in_flight,
        )?;
        super::validate_common("models.torchserve", &self.management_url, &self.model, 1)
    }
}

/// One TorchServe.
#[derive(Clone)]
pub struct TorchServe {
    http: HttpBackend,
    config: Arc<TorchServeConfig>,
}

impl TorchServe {
    pub fn new(config: TorchServeConfig) -> Result<TorchServe, reqwest::Error> {
        Ok(TorchServe {
            http: HttpBackend::new(config.max_in_flight, config.connect_timeout)?,
            config: Arc::new(config),
        })
    }

    /// The handle of one role's version on this server.
    pub fn model(&self, role: Role, version: &str) -> Arc<dyn RemoteModel> {
        let name = super::model_name(&self.config.model, role, version);
        let base = self.config.inference_url.trim_end_matches('/');
        Arc::new(TorchServeModel {
            http: self.http.clone(),
            info: BackendInfo {
                kind: "torchserve",
                endpoint: format!("{base}/predictions/{name}/{version}"),
                model: name,
            },
        })
    }
}

struct TorchServeModel {
    http: HttpBackend,
    info: BackendInfo,
}

#[derive(Serialize)]
struct Rows {
    data: [Vec<f32>; 1],
}

impl RemoteModel for TorchServeModel {
    fn infer(&self, input: Vec<f32>, deadline: Instant) -> RemoteCall {
        let http = self.http.clone();
        let endpoint = self.info.endpoint.clone();
        let body = Rows { data: [input] };
        Box::pin(async move {
            let rows: Vec<Vec<f32>> = http.post(&endpoint, &body, deadline).await?;
            three(rows.first().map(Vec::as_slice).unwrap_or_default())
        })
    }

    fn backend(&self) -> &BackendInfo {
        &self.info
    }
}
