//! The project's open-loop load generator (`tradeserve loadtest`).
//!
//! Open loop: request `i` is *scheduled* at `t0 + i / rate` whatever happened to earlier
//! requests, and its latency is measured from that scheduled time, so a stalled server shows
//! up as latency instead of silently lowering the offered load (no coordinated omission).
//!
//! - [`pacer`]: a dedicated OS thread with a 1 µs timer slack releases each slot on time.
//! - [`worker`]: one task per keep-alive HTTP/1.1 connection takes released slots, sends,
//!   reads the response and records client latency, status, and the server's own
//!   `metadata.latency_ms`.
//! - [`grpc_worker`]: the same over gRPC (`tradeserve.v1.Decisions/Predict`): as many workers
//!   (calls in flight) as connections, multiplexed over a few HTTP/2 channels.
//! - [`report`]: HdrHistogram percentiles, throughput and errors as JSON.

mod grpc_worker;
mod pacer;
pub mod report;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use report::Report;

/// What to send and how fast.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Requests per second.
    pub rate: f64,
    /// Measured requests.
    pub requests: u64,
    /// Requests sent first and not measured.
    pub warmup: u64,
    pub connections: usize,
    /// Symbols cycled through, one per request.
    pub symbols: Vec<String>,
    /// Fields merged into every request body.
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Request path; `/api/v1/predict` for decisions. Any other path is fetched with GET
    /// (e.g. `/health/live` measures the bare HTTP round trip).
    pub path: String,
    /// Headers added to every request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Give each decision request its own idempotency key, `client_order_id` = `PREFIX-N` (N
    /// the request's index), and list in the report which decision answered each (so a test
    /// can check every acknowledged decision against the audit logs, and that a retried
    /// order was booked once).
    pub order_ids: Option<String>,
    /// Decide over gRPC instead (`url` is then the gRPC listener's, `http://HOST:PORT`).
    pub grpc: Option<GrpcLoad>,
}

/// A gRPC load: `LoadConfig::connections` workers (calls in flight at once) share `channels`
/// HTTP/2 connections.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLoad {
    pub channels: usize,
}

/// Why a load test could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid url {0:?}: expected http://HOST:PORT")]
    Url(String),
    #[error("invalid load: {0}")]
    Invalid(String),
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: std::io::Error },
    #[error("request body: {0}")]
    Body(serde_json::Error),
    #[error("histogram: {0}")]
    Histogram(hdrhistogram::CreationError),
}

/// Run one load test to completion.
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    run_until(config, Arc::default()).await
}

/// [`run`], ending early once `stop` is set: no request is scheduled after it, those already
/// sent are answered, and the report counts the requests scheduled (a test runs load for as
/// long as something else takes, rather than for a time that depends on the machine).
pub async fn run_until(config: LoadConfig, stop: Arc<AtomicBool>) -> Result<Report, LoadError> {
    if !(config.rate.is_finite() && config.rate > 0.0) {
        return Err(LoadError::Invalid("rate must be > 0".into()));
    }
    if config.requests == 0 || config.connections == 0 || config.symbols.is_empty() {
        return Err(LoadError::Invalid(
            "requests, connections and symbols must be non-empty".into(),
        ));
    }
    let target = worker::Target::parse(&config.url)?;
    if let Some(grpc) = config.grpc {
        return run_grpc(config, grpc, target, stop).await;
    }
    let bodies = worker::bodies(&config.symbols, config.extra.as_ref()).map_err(LoadError::Body)?;
    let headers = config
        .headers
        .iter()
        .map(|(n, v)| {
            let name = hyper::header::HeaderName::from_bytes(n.as_bytes())
                .map_err(|e| LoadError::Invalid(format!("header name {n:?}: {e}")))?;
            let value = hyper::header::HeaderValue::from_str(v)
                .map_err(|e| LoadError::Invalid(format!("header {n}: {e}")))?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    // Fail fast when nothing listens, rather than reporting 100% errors.
    tokio::net::TcpStream::connect(&target.addr)
        .await
        .map_err(|cause| LoadError::Connect {
            addr: target.addr.clone(),
            cause,
        })?;

    let shared = std::sync::Arc::new(worker::Shared {
        target,
        bodies,
        timeout: config.timeout,
        warmup: config.warmup,
        path: config.path.clone(),
        headers,
        order_ids: config.order_ids.clone(),
    });
    drive(&config, stop, |_, slots, recorder| {
        tokio::spawn(worker::run(Arc::clone(&shared), slots, recorder))
    })
    .await
}

/// Release the slots on time and have `connections` workers (spawned by `spawn(i, slots,
/// recorder)`) serve them; their recordings merged into the report.
async fn drive(
    config: &LoadConfig,
    stop: Arc<AtomicBool>,
    mut spawn: impl FnMut(
        usize,
        async_channel::Receiver<pacer::Slot>,
        report::Recorder,
    ) -> tokio::task::JoinHandle<report::Recorder>,
) -> Result<Report, LoadError> {
    let total = config.warmup + config.requests;
    let (tx, rx) = async_channel::unbounded::<pacer::Slot>();
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / config.rate);
    let pacer = pacer::spawn(tx, start, interval, total, stop);
    let mut tasks = Vec::with_capacity(config.connections);
    for i in 0..config.connections {
        let recorder = report::Recorder::new().map_err(LoadError::Histogram)?;
        tasks.push(spawn(i, rx.clone(), recorder));
    }
    drop(rx);
    let mut results = report::Recorder::new().map_err(LoadError::Histogram)?;
    for t in tasks {
        if let Ok(r) = t.await {
            results.merge(r);
        }
    }
    let released = pacer.join().unwrap_or(total);
    let measured_start = start + interval.mul_f64(config.warmup as f64);
    let scheduled = released.saturating_sub(config.warmup);
    Ok(results.finish(config, scheduled, measured_start))
}

/// [`run_until`] over gRPC.
async fn run_grpc(
    config: LoadConfig,
    grpc: GrpcLoad,
    target: worker::Target,
    stop: Arc<AtomicBool>,
) -> Result<Report, LoadError> {
    if grpc.channels == 0 {
        return Err(LoadError::Invalid(
            "gRPC channels must be at least 1".into(),
        ));
    }
    let shared = Arc::new(grpc_worker::GrpcShared {
        requests: grpc_worker::requests(&config.symbols, config.extra.as_ref())?,
        metadata: grpc_worker::metadata(&config.headers)?,
        timeout: config.timeout,
        warmup: config.warmup,
        order_ids: config.order_ids.clone(),
    });
    let mut channels = Vec::with_capacity(grpc.channels);
    for _ in 0..grpc.channels {
        let endpoint = tonic::transport::Endpoint::from_shared(config.url.clone())
            .map_err(|_| LoadError::Url(config.url.clone()))?
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| LoadError::Connect {
            addr: target.addr.clone(),
            cause: std::io::Error::other(e.to_string()),
        })?;
        channels.push(channel);
    }
    drive(&config, stop, |i, slots, recorder| {
        let channel = channels[i % channels.len()].clone();
        tokio::spawn(grpc_worker::run(
            Arc::clone(&shared),
            channel,
            slots,
            recorder,
        ))
    })
    .await
}
