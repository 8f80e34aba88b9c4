//! A small async client for the MLflow REST API (2.0 endpoints, MLflow 3.x server).
//!
//! Every call has a timeout. The bearer token, when configured, is sent on every request and
//! never appears in `Debug` output, errors or logs. MLflow facts this relies on (measured
//! against MLflow 3.x by the tests' real server): versions are strings; a missing alias is `400 INVALID_PARAMETER_VALUE`;
//! artifacts are listed one level at a time through `/api/2.0/mlflow-artifacts/artifacts`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Why an MLflow call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MlflowError {
    /// MLflow could not be reached (connection refused, timeout, …): worth retrying.
    #[error("MLflow unreachable: {0}")]
    Unreachable(String),
    /// The thing asked for does not exist (missing model, version, alias or artifact).
    #[error("not found in MLflow: {0}")]
    NotFound(String),
    /// MLflow answered with an error.
    #[error("MLflow error {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// MLflow answered with something this client does not understand.
    #[error("unexpected MLflow response: {0}")]
    Protocol(String),
    /// An artifact location the service cannot download from.
    #[error(
        "unsupported artifact location {0:?}: run MLflow with --serve-artifacts (mlflow-artifacts:/ URIs)"
    )]
    UnsupportedLocation(String),
}

impl MlflowError {
    /// True when retrying later may succeed (MLflow down or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            MlflowError::Unreachable(_) => true,
            MlflowError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// One registered model version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// `{"model_version": …}`, the envelope of every model-version answer.
#[derive(Deserialize)]
struct VersionEnvelope {
    model_version: ModelVersion,
}

/// One entry of an artifact listing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// Client for one tracking server.
#[derive(Clone)]
pub struct MlflowClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

fn transport(e: reqwest::Error) -> MlflowError {
    // reqwest's message can include the URL but never headers, so the token cannot leak.
    MlflowError::Unreachable(e.without_url().to_string())
}

impl MlflowClient {
    /// A client for `tracking_uri` (e.g. `http://127.0.0.1:5000`), each call bounded by `timeout`.
    pub fn new(
        tracking_uri: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<MlflowClient, MlflowError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| MlflowError::Protocol(e.to_string()))?;
        Ok(MlflowClient {
            http,
            base: tracking_uri.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn tracking_uri(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, MlflowError> {
        let res = req.send().await.map_err(transport)?;
        let status = res.status();
        let body = res.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| MlflowError::Protocol(format!("{what}: {e}")));
        }
        let err: ApiError = serde_json::from_slice(&body).unwrap_or(ApiError {
            error_code: String::new(),
            message: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
        let missing = status == StatusCode::NOT_FOUND
            || err.error_code == "RESOURCE_DOES_NOT_EXIST"
            || (err.error_code == "INVALID_PARAMETER_VALUE" && err.message.contains("not found"));
        if missing {
            return Err(MlflowError::NotFound(format!("{what}: {}", err.message)));
        }
        Err(MlflowError::Api {
            status: status.as_u16(),
            code: err.error_code,
            message: err.message,
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<T, MlflowError> {
        self.send(self.request(Method::GET, path).query(query), what)
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<T, MlflowError> {
        self.send(self.request(Method::POST, path).json(body), what)
            .await
    }

    /// The version an alias points at.
    pub async fn version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let r: VersionEnvelope = self
            .get(
                "/api/2.0/mlflow/registered-models/alias",
                &[("name", name), ("alias", alias)],
                &format!("{name}@{alias}"),
            )
            .await?;
        Ok(r.model_version)
    }

    /// One version of a registered model.
    pub async fn model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let r: VersionEnvelope = self
            .get(
                "/api/2.0/mlflow/model-versions/get",
                &[("name", name), ("version", version)],
                &format!("{name} version {version}"),
            )
            .await?;
        Ok(r.model_version)
    }

    /// The artifact URI of a run (`mlflow-artifacts:/<experiment>/<run>/artifacts`).
    pub async fn run_artifact_uri(&self, run_id: &str) -> Result<String, MlflowError> {
        let v: Value = self
            .get(
                "/api/2.0/mlflow/runs/get",
                &[("run_id", run_id)],
                &format!("run {run_id}"),
            )
            .await?;
        v["run"]["info"]["artifact_uri"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| MlflowError::Protocol(format!("run {run_id} has no artifact_uri")))
    }

    /// The artifact location of an MLflow 3 logged model (`models:/m-…`).
    pub async fn logged_model_artifact_uri(&self, model_id: &str) -> Result<String, MlflowError> {
        let v: Value = self
            .get(
                &format!("/api/2.0/mlflow/logged-models/{model_id}"),
                &[],
                &format!("logged model {model_id}"),
            )
            .await?;
        v["model"]["info"]["artifact_location"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                MlflowError::Protocol(format!("logged model {model_id} has no artifact_location"))
            })
    }

    /// One level of an artifact folder (paths in the answer are relative to `path`).
    pub async fn list_artifacts(&self, path: &str) -> Result<Vec<FileInfo>, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        let r: R = self
            .get(
                "/api/2.0/mlflow-artifacts/artifacts",
                &[("path", path)],
                &format!("artifacts {path}"),
            )
            .await?;
        Ok(r.files)
    }

    /// Download one artifact file.
    pub async fn download(&self, path: &str) -> Result<Vec<u8>, MlflowError> {
        let res = self
            .request(
                Method::GET,
                &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"),
            )
            .send()
            .await
            .map_err(transport)?;
        let status = res.status();
        if status == StatusCode::NOT_FOUND {
            return Err(MlflowError::NotFound(format!("artifact {path}")));
        }
        if !status.is_success() {
            return Err(MlflowError::Api {
                status: status.as_u16(),
                code: String::new(),
                message: format!("download {path}"),
            });
        }
        Ok(res.bytes().await.map_err(transport)?.to_vec())
    }

    /// Upload one artifact file.
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<(), MlflowError> {
        let res = self
            .request(
                Method::PUT,
                &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"),
            )
            .body(bytes)
            .send()
            .await
            .map_err(transport)?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(MlflowError::Api {
                status: res.status().as_u16(),
                code: String::new(),
                message: format!("upload {path}"),
            })
        }
    }

    /// Create a registered model; an existing one is fine.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<(), MlflowError> {
        match self
            .post::<Value>(
                "/api/2.0/mlflow/registered-models/create",
                &json!({"name": name}),
                name,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(MlflowError::Api { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The id of the experiment with this name, created if missing.
    pub async fn ensure_experiment(&self, name: &str) -> Result<String, MlflowError> {
        match self
            .get::<Value>(
                "/api/2.0/mlflow/experiments/get-by-name",
                &[("experiment_name", name)],
                name,
            )
            .await
        {
            Ok(v) => v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| MlflowError::Protocol("experiment without id".into())),
            Err(MlflowError::NotFound(_)) => {
                let v: Value = self
                    .post(
                        "/api/2.0/mlflow/experiments/create",
                        &json!({"name": name}),
                        name,
                    )
                    .await?;
                v["experiment_id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| MlflowError::Protocol("created experiment without id".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Start a run; returns (run id, artifact URI).
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
    ) -> Result<(String, String), MlflowError> {
        let v: Value = self
            .post(
                "/api/2.0/mlflow/runs/create",
                &json!({"experiment_id": experiment_id, "run_name": run_name}),
                "create run",
            )
            .await?;
        let info = &v["run"]["info"];
        match (info["run_id"].as_str(), info["artifact_uri"].as_str()) {
            (Some(id), Some(uri)) => Ok((id.to_owned(), uri.to_owned())),
            _ => Err(MlflowError::Protocol(
                "created run without id or artifact_uri".into(),
            )),
        }
    }

    /// Mark a run finished.
    pub async fn finish_run(&self, run_id: &str) -> Result<(), MlflowError> {
        self.post::<Value>(
            "/api/2.0/mlflow/runs/update",
            &json!({"run_id": run_id, "status": "FINISHED"}),
            "finish run",
        )
        .await
        .map(|_| ())
    }

    /// Register a new version from an artifact source.
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let r: VersionEnvelope = self
            .post(
                "/api/2.0/mlflow/model-versions/create",
                &json!({"name": name, "source": source, "run_id": run_id}),
                &format!("new version of {name}"),
            )
            .await?;
        Ok(r.model_version)
    }

    /// Point an alias at a version.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        self.post::<Value>(
            "/api/2.0/mlflow/registered-models/alias",
            &json!({"name": name, "alias": alias, "version": version}),
            &format!("{name}@{alias}"),
        )
        .await
        .map(|_| ())
    }
}
