//! What every HTTP model backend shares: one pooled keep-alive client, at most
//! `max_in_flight` calls at once (more wait for a slot), and every call — the wait included —
//! bounded by the request's deadline. Refusals, error statuses and unreadable answers are
//! [`ModelError::Unavailable`] naming the endpoint; the deadline is [`ModelError::Deadline`].

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tradeserve_core::error::ModelError;

/// One server's client and its in-flight bound.
#[derive(Clone)]
pub struct HttpBackend {
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

impl HttpBackend {
    pub fn new(
        max_in_flight: NonZeroUsize,
        connect_timeout: Duration,
    ) -> Result<HttpBackend, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        Ok(HttpBackend {
            client,
            slots: Arc::new(Semaphore::new(max_in_flight.get())),
        })
    }

    /// POST `body` as JSON to `endpoint` and read the JSON answer, by `deadline`.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &B,
        deadline: Instant,
    ) -> Result<R, ModelError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ModelError::Deadline);
        }
        tokio::time::timeout(remaining, self.exchange(endpoint, body))
            .await
            .map_err(|_| ModelError::Deadline)?
    }

    async fn exchange<B: Serialize, R: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &B,
    ) -> Result<R, ModelError> {
        let unavailable = |why: String| ModelError::Unavailable(format!("{endpoint}: {why}"));
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let response = self
            .client
            .post(endpoint)
            .json(body)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(200).collect();
            return Err(unavailable(format!("HTTP {status}: {text}")));
        }
        response
            .json()
            .await
            .map_err(|e| unavailable(format!("unreadable answer: {e}")))
    }
}

impl HttpBackend {
    /// `GET url` for a status endpoint (not bounded by a request's deadline, not counted
    /// against the in-flight bound): the status code and the body as JSON (`Null` when it is
    /// not JSON); `Err` when the server did not answer within `timeout`.
    pub async fn status(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<(u16, serde_json::Value), String> {
        let response = self
            .client
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }
}

/// A three-probability output from the values a server returned.
pub fn three(values: &[f32]) -> Result<[f32; 3], ModelError> {
    match values {
        &[a, b, c] => Ok([a, b, c]),
        other => Err(ModelError::BadOutput(other.to_vec())),
    }
}

/// `n` answers of three probabilities from the rows a server returned.
pub fn rows_of_three(rows: &[Vec<f32>], n: usize) -> Result<Vec<[f32; 3]>, ModelError> {
    if rows.len() != n {
        return Err(ModelError::BadOutput(
            rows.iter().flatten().copied().collect(),
        ));
    }
    rows.iter().map(|r| three(r)).collect()
}

/// `rows` (`n × width`, row-major) as `n` rows; `None` when it is not a whole number of rows.
pub fn split_rows(rows: &[f32], width: usize) -> Option<Vec<Vec<f32>>> {
    if width == 0 || rows.is_empty() || !rows.len().is_multiple_of(width) {
        return None;
    }
    Some(rows.chunks(width).map(<[f32]>::to_vec).collect())
}

/// The error for rows that are not `n × width`.
pub fn bad_rows(rows: &[f32], width: usize) -> ModelError {
    ModelError::InputWidth {
        expected: width,
        got: rows.len(),
    }
}
