//! `[server]`: the listener and request handling — address, body and in-flight limits,
//! deadlines, connection timeouts, drain, worker threads, log format and TLS.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;
use tradeserve_core::bounded::PositiveDuration;
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};

/// HTTP server and request handling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (logged at start).
    pub listen: String,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Requests processed at once; more are answered 429 at once (admission control).
    pub max_in_flight: NonZeroUsize,
    /// Decisions per second this replica sustains at client p99 < 10 ms, as measured on its
    /// hardware (docs/BENCHMARKS.md: 25,000 on two shared vCPUs, issue 16). Exported as
    /// `tradeserve_capacity_decisions_per_second`; the load alert fires at 80 % of it.
    pub capacity_per_second: f64,
    /// A decision not ready this long after arrival is answered 504.
    pub request_deadline: PositiveDuration,
    /// How far in the future a request `timestamp` may be.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Longest wait for in-flight requests and the event flush at shutdown, after the drain
    /// delay.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long readiness answers 503 while requests are still served, so
    /// load balancers stop sending traffic before the listener closes.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Open connections allowed; one more is answered 503 and closed.
    pub max_connections: NonZeroUsize,
    /// Longest time a client may take to send a request's headers (slowloris); the
    /// connection is closed.
    pub header_read_timeout: PositiveDuration,
    /// Longest time a client may take to send a request's body once its headers arrived;
    /// answered 408 and the connection closed.
    pub body_read_timeout: PositiveDuration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: PositiveDuration,
    /// Async worker threads; 0 = one per CPU core.
    pub worker_threads: usize,
    /// `text` or `json` logs (on stderr).
    pub log_format: LogFormat,
    /// TLS (rustls): certificate, key, optional client CA (mTLS); reloaded when they change.
    pub tls: tradeserve_transport::tls::TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 16 * 1024,
            max_in_flight: tradeserve_core::bounded::at_least_one_usize(4096),
            capacity_per_second: 25_000.0,
            request_deadline: PositiveDuration::millis(40),
            max_clock_skew: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            drain_delay: Duration::from_secs(5),
            max_connections: tradeserve_core::bounded::at_least_one_usize(10_000),
            header_read_timeout: PositiveDuration::secs(5),
            body_read_timeout: PositiveDuration::secs(5),
            idle_timeout: PositiveDuration::secs(60),
            worker_threads: 0,
            log_format: LogFormat::Text,
            tls: tradeserve_transport::tls::TlsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidSetting> {
        self.tls.validate()?;
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(
                format!("server.listen {:?} is not an IP:PORT address", self.listen).into(),
            );
        }
        if self.body_limit_bytes < 64 {
            return Err("server.body_limit_bytes must be at least 64".into());
        }
        if !(self.capacity_per_second.is_finite() && self.capacity_per_second > 0.0) {
            return Err("server.capacity_per_second must be a positive number".into());
        }
        Ok(())
    }
}
