//! Recording outcomes into HdrHistograms and summarizing them as a JSON report.

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::LoadConfig;

/// What happened to one request.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Status(u16),
    ConnectError,
    IoError,
    Timeout,
}

/// 1 µs .. 100 s at 3 significant digits.
fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, 100_000_000, 3)
}

/// Per-worker results, merged at the end.
pub struct Recorder {
    client_us: Histogram<u64>,
    server_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    connect_errors: u64,
    io_errors: u64,
    timeouts: u64,
    last_completion: Option<Instant>,
    acknowledged: Vec<Acknowledged>,
}

/// A decision a request was answered with (with `LoadConfig::order_ids`).
#[derive(Debug, Clone, Serialize)]
pub struct Acknowledged {
    /// The request's index (its `client_order_id` is `PREFIX-index`).
    pub index: u64,
    pub status: u16,
    pub decision_id: String,
}

impl Recorder {
    pub fn new() -> Result<Recorder, hdrhistogram::CreationError> {
        Ok(Recorder {
            client_us: histogram()?,
            server_us: histogram()?,
            statuses: BTreeMap::new(),
            connect_errors: 0,
            io_errors: 0,
            timeouts: 0,
            last_completion: None,
            acknowledged: Vec::new(),
        })
    }

    pub fn record(&mut self, outcome: Outcome, scheduled: Instant, server_ms: Option<f64>) {
        let now = Instant::now();
        self.last_completion = Some(self.last_completion.map_or(now, |t| t.max(now)));
        match outcome {
            Outcome::Status(s) => {
                *self.statuses.entry(s).or_default() += 1;
                let us = now.saturating_duration_since(scheduled).as_micros().max(1) as u64;
                self.client_us.saturating_record(us);
                if let Some(ms) = server_ms {
                    self.server_us
                        .saturating_record(((ms * 1000.0).round() as u64).max(1));
                }
            }
            Outcome::ConnectError => self.connect_errors += 1,
            Outcome::IoError => self.io_errors += 1,
            Outcome::Timeout => self.timeouts += 1,
        }
    }

    /// Request `index` was answered `status` with decision `decision_id`.
    pub fn acknowledge(&mut self, index: u64, status: u16, decision_id: String) {
        self.acknowledged.push(Acknowledged {
            index,
            status,
            decision_id,
        });
    }

    pub fn merge(&mut self, other: Recorder) {
        self.acknowledged.extend(other.acknowledged);
        let _ = self.client_us.add(&other.client_us);
        let _ = self.server_us.add(&other.server_us);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.connect_errors += other.connect_errors;
        self.io_errors += other.io_errors;
        self.timeouts += other.timeouts;
        self.last_completion = match (self.last_completion, other.last_completion) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The report of a run that scheduled `requests` measured requests.
    pub fn finish(self, config: &LoadConfig, requests: u64, measured_start: Instant) -> Report {
        let responses: u64 = self.statuses.values().sum();
        let duration_s = self.last_completion.map_or(0.0, |t| {
            t.saturating_duration_since(measured_start).as_secs_f64()
        });
        let decisions = self.statuses.get(&200).copied().unwrap_or(0)
            + self.statuses.get(&403).copied().unwrap_or(0);
        Report {
            target_rate: config.rate,
            requests,
            connections: config.connections,
            responses,
            decisions,
            duration_s,
            achieved_rate: if duration_s > 0.0 {
                responses as f64 / duration_s
            } else {
                0.0
            },
            statuses: self
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: Errors {
                connect: self.connect_errors,
                io: self.io_errors,
                timeout: self.timeouts,
            },
            latency_ms: Percentiles::of(&self.client_us),
            server_latency_ms: Percentiles::of(&self.server_us),
            histograms: Histograms {
                client_us: buckets(&self.client_us),
                server_us: buckets(&self.server_us),
            },
            acknowledged: self.acknowledged,
        }
    }
}

/// Transport-level failures (no HTTP status).
#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    /// Nothing was sent: no connection could be made, or the one made closed before the
    /// request went out (the server never saw the request).
    pub connect: u64,
    /// The request was sent and the connection failed before its response (the server may
    /// have executed it).
    pub io: u64,
    /// No response within the per-request timeout.
    pub timeout: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The recorded values of a histogram, as `[value, count]` pairs (each value the highest of
/// its bucket, at the histogram's 3 significant digits), lowest first.
fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Both latency histograms, whole: runs of the same binary can be pooled (their counts added)
/// and percentiles taken over all of them (`scripts/bench_pool.py`), which is steadier than a
/// median of each run's percentiles.
#[derive(Debug, Clone, Serialize)]
pub struct Histograms {
    /// Client-observed latency, µs.
    pub client_us: Vec<(u64, u64)>,
    /// The server's own latency, µs.
    pub server_us: Vec<(u64, u64)>,
}

/// The result of one load test.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target_rate: f64,
    /// Measured requests scheduled (all of them, unless the run was stopped early).
    pub requests: u64,
    pub connections: usize,
    /// Requests that got an HTTP response.
    pub responses: u64,
    /// Responses that carried a decision (200 or 403).
    pub decisions: u64,
    /// From the first measured scheduled send to the last response.
    pub duration_s: f64,
    pub achieved_rate: f64,
    pub statuses: BTreeMap<String, u64>,
    pub errors: Errors,
    /// Client-observed, from each request's scheduled send time.
    pub latency_ms: Percentiles,
    /// The server's own `metadata.latency_ms`.
    pub server_latency_ms: Percentiles,
    pub histograms: Histograms,
    /// With `LoadConfig::order_ids`: the decision that answered each request that got one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acknowledged: Vec<Acknowledged>,
}
