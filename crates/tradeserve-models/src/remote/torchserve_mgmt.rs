//! TorchServe's management API, as TradeServe uses it: a version's status (how many of its
//! workers are READY — the health TorchServe's `/ping` does not give), registering a `.mar`
//! from TorchServe's model store, making a version the default and unregistering one.
//!
//! These calls are control-plane calls (start-up, a registry swap, a new experiment or rollout,
//! the steward's sweep), never on a request's path; each is bounded by its own timeout.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

/// A management call that did not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManagementError {
    /// TorchServe could not be reached or did not answer in time.
    #[error("TorchServe management API {url} unreachable: {why}")]
    Unreachable { url: String, why: String },
    /// TorchServe answered with an error.
    #[error("TorchServe management API {url} answered HTTP {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
}

/// One registered version, as `GET /models/{name}/{version}` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    /// Workers whose status is `READY`.
    pub ready_workers: usize,
    /// Every worker, whatever its status.
    pub workers: usize,
}

impl VersionStatus {
    /// At least one worker answers.
    pub fn is_ready(&self) -> bool {
        self.ready_workers > 0
    }
}

/// How TradeServe registers a version: workers, and TorchServe's server-side batching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub initial_workers: NonZeroU32,
    pub batch_size: NonZeroU32,
    pub max_batch_delay: Duration,
}

/// A client of one TorchServe's management API.
#[derive(Clone)]
pub struct Management {
    client: reqwest::Client,
    base: String,
    /// Registration waits for the workers to start (`synchronous=true`).
    register_timeout: Duration,
}

#[derive(Deserialize)]
struct Described {
    #[serde(default)]
    workers: Vec<Worker>,
}

#[derive(Deserialize)]
struct Worker {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

impl Management {
    pub fn new(
        management_url: &str,
        timeout: Duration,
        register_timeout: Duration,
    ) -> Result<Management, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .no_proxy()
            .build()?;
        Ok(Management {
            client,
            base: management_url.trim_end_matches('/').to_owned(),
            register_timeout,
        })
    }

    /// The version's workers; `None` when TorchServe does not know the model or the version.
    pub async fn status(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionStatus>, ManagementError> {
        let url = format!("{}/models/{name}/{version}", self.base);
        let response = self.send(self.client.get(&url), &url).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let described: Vec<Described> =
            Self::checked(response, &url)
                .await?
                .json()
                .await
                .map_err(|e| ManagementError::Unreachable {
                    url: url.clone(),
                    why: format!("unreadable answer: {e}"),
                })?;
        let workers: Vec<&Worker> = described.iter().flat_map(|d| &d.workers).collect();
        Ok(Some(VersionStatus {
            ready_workers: workers.iter().filter(|w| w.status == "READY").count(),
            workers: workers.len(),
        }))
    }

    /// Register `<model store>/<archive>` under `name`, waiting for its workers to start.
    pub async fn register(
        &self,
        archive: &str,
        name: &str,
        how: Registration,
    ) -> Result<(), ManagementError> {
        let url = format!("{}/models", self.base);
        let delay_ms = how.max_batch_delay.as_millis().to_string();
        let query = [
            ("url", archive.to_owned()),
            ("model_name", name.to_owned()),
            ("initial_workers", how.initial_workers.to_string()),
            ("batch_size", how.batch_size.to_string()),
            ("max_batch_delay", delay_ms),
            ("synchronous", "true".to_owned()),
        ];
        let request = self
            .client
            .post(&url)
            .query(&query)
            .timeout(self.register_timeout);
        let response = self.send(request, &url).await?;
        Self::checked(response, &url).await.map(drop)
    }

    /// Make `version` the one `POST /predictions/{name}` (without a version) answers with.
    pub async fn set_default(&self, name: &str, version: &str) -> Result<(), ManagementError> {
        let url = format!("{}/models/{name}/{version}/set-default", self.base);
        let response = self.send(self.client.put(&url), &url).await?;
        Self::checked(response, &url).await.map(drop)
    }

    /// Unregister one version (TorchServe stops its workers).
    pub async fn unregister(&self, name: &str, version: &str) -> Result<(), ManagementError> {
        let url = format!("{}/models/{name}/{version}", self.base);
        let response = self.send(self.client.delete(&url), &url).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Self::checked(response, &url).await.map(drop)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ManagementError> {
        request
            .send()
            .await
            .map_err(|e| ManagementError::Unreachable {
                url: url.to_owned(),
                why: e.to_string(),
            })
    }

    async fn checked(
        response: reqwest::Response,
        url: &str,
    ) -> Result<reqwest::Response, ManagementError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or(text);
        Err(ManagementError::Refused {
            url: url.to_owned(),
            status: status.as_u16(),
            message: message.chars().take(300).collect(),
        })
    }
}
