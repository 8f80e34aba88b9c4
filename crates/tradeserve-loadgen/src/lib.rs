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
//! - [`report`]: HdrHistogram percentiles, throughput and errors as JSON.

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

    let total = config.warmup + config.requests;
    let (tx, rx) = async_channel::unbounded::<pacer::Slot>();
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / config.rate);
    let pacer = pacer::spawn(tx, start, interval, total, stop);
    let shared = std::sync::Arc::new(worker::Shared {
        target,
        bodies,
        timeout: config.timeout,
        warmup: config.warmup,
        path: config.path.clone(),
        headers,
        order_ids: config.order_ids.clone(),
    });
    let mut tasks = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let recorder = report::Recorder::new().map_err(LoadError::Histogram)?;
        tasks.push(tokio::spawn(worker::run(
            std::sync::Arc::clone(&shared),
            rx.clone(),
            recorder,
        )));
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
    Ok(results.finish(&config, scheduled, measured_start))
}
