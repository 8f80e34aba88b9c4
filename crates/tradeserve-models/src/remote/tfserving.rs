//! TF Serving's REST predict API: `POST {url}/v1/models/{model}[/versions/{version}]:predict`
//! with `{"instances": [[...]]}` (row form, answered with `predictions`) or `{"inputs":
//! [[...]]}` (columnar form, answered with `outputs`). The tests run it against KServe's model
//! server, whose v1 protocol is this API (no TF Serving build installs on this machine);
//! KServe has no `/versions/{version}` path, so there the version goes in the model name
//! (`versioned = false`).
//!
//! The client, its in-flight bound and the deadline are [`crate::remote::http`]'s.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;
use tradeserve_core::bounded::{PositiveDuration, at_least_one_usize};
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};
use tradeserve_core::model_set::{BackendInfo, RemoteModel, RemoteRows};
use tradeserve_core::types::Role;

use crate::remote::http::{HttpBackend, bad_rows, rows_of_three, split_rows};
use crate::remote::{ModelStatus, STATUS_TIMEOUT};

/// How the request body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TfServingForm {
    /// `{"instances": [[x0, x1, ...]]}` → `{"predictions": [[p0, p1, p2]]}`.
    Instances,
    /// `{"inputs": [[x0, x1, ...]]}` → `{"outputs": [[p0, p1, p2]]}`.
    Inputs,
}

/// `[models.tfserving]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TfServingConfig {
    /// Base URL of the REST API, e.g. `http://127.0.0.1:8501`.
    pub url: String,
    /// The model's name on the server: `{role}`, `{name}` and `{version}` are replaced.
    pub model: String,
    /// `true`: `/v1/models/{model}/versions/{version}:predict` (TF Serving); `false`:
    /// `/v1/models/{model}:predict`, the version in `model` (KServe's v1 protocol).
    pub versioned: bool,
    pub form: TfServingForm,
    /// Calls in flight at once to this server; more wait for a slot within their deadline.
    pub max_in_flight: NonZeroUsize,
    pub connect_timeout: PositiveDuration,
}

impl Default for TfServingConfig {
    fn default() -> Self {
        TfServingConfig {
            url: "http://127.0.0.1:8501".into(),
            model: "{role}".into(),
            versioned: true,
            form: TfServingForm::Instances,
            max_in_flight: at_least_one_usize(64),
            connect_timeout: PositiveDuration::millis(250),
        }
    }
}

impl TfServingConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        super::validate_common("models.tfserving", &self.url, &self.model)
    }
}

/// One TF Serving REST server.
#[derive(Clone)]
pub struct TfServing {
    http: HttpBackend,
    config: Arc<TfServingConfig>,
}

impl TfServing {
    pub fn new(config: TfServingConfig) -> Result<TfServing, reqwest::Error> {
        Ok(TfServing {
            http: HttpBackend::new(config.max_in_flight, config.connect_timeout.get())?,
            config: Arc::new(config),
        })
    }

    /// The version's status: `GET /v1/models/{model}[/versions/{v}]` — TF Serving's
    /// `model_version_status` (ready when the version is `AVAILABLE`), or a `"ready"` flag as
    /// KServe's v1 protocol answers; 404 is missing.
    pub async fn status(&self, role: Role, version: &str) -> ModelStatus {
        let name = super::model_name(&self.config.model, role, version);
        let base = self.config.url.trim_end_matches('/');
        let url = match self.config.versioned {
            true => format!("{base}/v1/models/{name}/versions/{version}"),
            false => format!("{base}/v1/models/{name}"),
        };
        match self.http.status(&url, STATUS_TIMEOUT).await {
            Ok((200, body)) => status_of(&body, version),
            Ok((404, _)) => ModelStatus::Missing,
            Ok((code, body)) => ModelStatus::NotReady {
                detail: format!("HTTP {code}: {body}"),
            },
            Err(error) => ModelStatus::Unreachable { error },
        }
    }

    /// The handle of one role's version on this server.
    pub fn model(&self, role: Role, version: &str) -> Arc<dyn RemoteModel> {
        let name = super::model_name(&self.config.model, role, version);
        let base = self.config.url.trim_end_matches('/');
        let endpoint = match self.config.versioned {
            true => format!("{base}/v1/models/{name}/versions/{version}:predict"),
            false => format!("{base}/v1/models/{name}:predict"),
        };
        Arc::new(TfServingModel {
            http: self.http.clone(),
            form: self.config.form,
            info: BackendInfo {
                kind: "tfserving",
                endpoint,
                model: name,
            },
        })
    }
}

/// A status body: TF Serving's `model_version_status` for `version` (or its only entry), or
/// KServe's `ready` flag.
fn status_of(body: &serde_json::Value, version: &str) -> ModelStatus {
    if let Some(ready) = body.get("ready").and_then(serde_json::Value::as_bool) {
        return match ready {
            true => ModelStatus::Ready,
            false => ModelStatus::NotReady {
                detail: "ready: false".into(),
            },
        };
    }
    let entries = body
        .get("model_version_status")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let entry = entries
        .iter()
        .find(|e| e.get("version").and_then(serde_json::Value::as_str) == Some(version))
        .or(if entries.len() == 1 {
            entries.first()
        } else {
            None
        });
    match entry
        .and_then(|e| e.get("state"))
        .and_then(serde_json::Value::as_str)
    {
        Some("AVAILABLE") => ModelStatus::Ready,
        Some(state) => ModelStatus::NotReady {
            detail: format!("state {state}"),
        },
        None => ModelStatus::Missing,
    }
}

struct TfServingModel {
    http: HttpBackend,
    form: TfServingForm,
    info: BackendInfo,
}

#[derive(Serialize)]
struct Rows {
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<Vec<Vec<f32>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<Vec<Vec<f32>>>,
}

#[derive(Deserialize)]
struct Answer {
    predictions: Option<Vec<Vec<f32>>>,
    outputs: Option<Vec<Vec<f32>>>,
}

impl RemoteModel for TfServingModel {
    fn infer_rows(&self, rows: Vec<f32>, width: usize, deadline: Instant) -> RemoteRows {
        let Some(rows) = split_rows(&rows, width) else {
            let e = bad_rows(&rows, width);
            return Box::pin(async move { Err(e) });
        };
        let n = rows.len();
        let http = self.http.clone();
        let endpoint = self.info.endpoint.clone();
        let body = match self.form {
            TfServingForm::Instances => Rows {
                instances: Some(rows),
                inputs: None,
            },
            TfServingForm::Inputs => Rows {
                instances: None,
                inputs: Some(rows),
            },
        };
        Box::pin(async move {
            let answer: Answer = http.post(&endpoint, &body, deadline).await?;
            let rows = answer.predictions.or(answer.outputs).unwrap_or_default();
            rows_of_three(&rows, n)
        })
    }

    fn backend(&self) -> &BackendInfo {
        &self.info
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tf_serving_and_kserve_v1_status_bodies_are_read() {
        let tf = json!({"model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}},
            {"version": "2", "state": "LOADING", "status": {"error_code": "OK"}}]});
        assert_eq!(status_of(&tf, "1"), ModelStatus::Ready);
        assert_eq!(
            status_of(&tf, "2"),
            ModelStatus::NotReady {
                detail: "state LOADING".into()
            }
        );
        assert_eq!(status_of(&tf, "3"), ModelStatus::Missing);
        assert_eq!(
            status_of(&json!({"name": "m", "ready": true}), "1"),
            ModelStatus::Ready
        );
        assert!(!status_of(&json!({"name": "m", "ready": false}), "1").is_ready());
    }
}
