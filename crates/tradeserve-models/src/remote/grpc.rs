//! What every gRPC model backend shares: one HTTP/2 channel per server (connected on first
//! use, reconnected by tonic when it drops; every call multiplexed over it), at most
//! `max_in_flight` calls at once (more wait for a slot), and every call — the wait included —
//! bounded by the request's deadline, which also travels as the call's `grpc-timeout`.
//! A failed call is [`ModelError::Unavailable`] naming the server and the gRPC status; the
//! deadline is [`ModelError::Deadline`].

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};
use tradeserve_core::error::ModelError;

/// How a backend reaches its server: REST (JSON over HTTP/1.1) or gRPC (protobuf over
/// HTTP/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireProtocol {
    #[default]
    Rest,
    Grpc,
}

/// Why a backend's client cannot be built (at start, from its configuration).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the HTTP client: {0}")]
    Http(String),
    #[error("the gRPC endpoint {url:?}: {why}")]
    Grpc { url: String, why: String },
}

/// One server's channel and its in-flight bound.
#[derive(Clone)]
pub struct GrpcBackend {
    endpoint: Endpoint,
    /// Made on first use, inside the runtime (tonic's channel spawns its worker there; a
    /// backend may be built before the runtime runs, as `tradeserve replay` does).
    channel: Arc<OnceLock<Channel>>,
    url: Arc<str>,
    slots: Arc<Semaphore>,
}

impl GrpcBackend {
    /// A channel to `url` (`http://HOST:PORT`), connected when first used.
    pub fn new(
        url: &str,
        max_in_flight: NonZeroUsize,
        connect_timeout: Duration,
    ) -> Result<GrpcBackend, ClientError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ClientError::Grpc {
                url: url.to_owned(),
                why: e.to_string(),
            })?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        Ok(GrpcBackend {
            endpoint,
            channel: Arc::new(OnceLock::new()),
            url: url.into(),
            slots: Arc::new(Semaphore::new(max_in_flight.get())),
        })
    }

    /// The backend's channel when its `protocol` is gRPC (`None`: it speaks REST).
    pub fn for_protocol(
        protocol: WireProtocol,
        url: &str,
        max_in_flight: NonZeroUsize,
        connect_timeout: Duration,
    ) -> Result<Option<GrpcBackend>, ClientError> {
        match protocol {
            WireProtocol::Grpc => GrpcBackend::new(url, max_in_flight, connect_timeout).map(Some),
            WireProtocol::Rest => Ok(None),
        }
    }

    /// The channel, for a generated client (call within the Tokio runtime).
    pub fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Run `call` (given the time left, for its `grpc-timeout`) within a slot, by `deadline`.
    pub async fn call<T, F, Fut>(&self, deadline: Instant, call: F) -> Result<T, ModelError>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ModelError::Deadline);
        }
        let work = async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|e| self.unavailable(&e.to_string()))?;
            let left = deadline.saturating_duration_since(Instant::now());
            call(left).await.map_err(|s| self.failed(&s))
        };
        tokio::time::timeout(remaining, work)
            .await
            .map_err(|_| ModelError::Deadline)?
    }

    fn unavailable(&self, why: &str) -> ModelError {
        ModelError::Unavailable(format!("{} (gRPC): {why}", self.url))
    }

    /// A failed call: the server's deadline is ours; anything else, unavailable.
    fn failed(&self, status: &tonic::Status) -> ModelError {
        if status.code() == tonic::Code::DeadlineExceeded {
            return ModelError::Deadline;
        }
        let message: String = status.message().chars().take(200).collect();
        self.unavailable(&format!("{:?}: {message}", status.code()))
    }
}

/// A request with the call's deadline as its `grpc-timeout`.
pub fn timed<T>(message: T, left: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(left);
    request
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> ClientError {
        ClientError::Http(e.to_string())
    }
}
