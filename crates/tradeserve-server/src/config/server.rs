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
    /// The operator lane (off when unset): a second listener, on a loopback or private
    /// address, serving the control, halt, model, health and metrics endpoints (not
    /// decisions) with its own connection budget and no admission limit, so an operator can
    /// halt, roll back and look whatever trading clients do. Same keys and roles.
    pub admin_listen: Option<String>,
    /// Open connections allowed on the operator lane; one more is answered 503 and closed.
    pub admin_max_connections: NonZeroUsize,
    /// The gRPC listener (off when unset): the native `tradeserve.v1` API, the Open Inference
    /// Protocol, health and reflection, over HTTP/2 with the same keys, roles, limits and TLS.
    pub grpc_listen: Option<String>,
    /// Open connections allowed on the gRPC listener (HTTP/2 multiplexes: a client needs one).
    pub grpc_max_connections: NonZeroUsize,
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
            admin_listen: None,
            admin_max_connections: tradeserve_core::bounded::at_least_one_usize(32),
            grpc_listen: None,
            grpc_max_connections: tradeserve_core::bounded::at_least_one_usize(1024),
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
        if let Some(admin) = &self.admin_listen {
            check_admin_listen(admin, &self.listen)?;
        }
        if let Some(grpc) = &self.grpc_listen {
            check_grpc_listen(grpc, [Some(&self.listen), self.admin_listen.as_ref()])?;
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

/// The operator lane listens on a loopback or private address (RFC 1918, IPv6 unique local),
/// never on every interface or a public one, and not on the trading listener's address.
/// `server.grpc_listen`: an address, not one the HTTP listeners use.
fn check_grpc_listen(grpc: &str, http: [Option<&String>; 2]) -> Result<(), InvalidSetting> {
    let Ok(addr) = grpc.parse::<SocketAddr>() else {
        return Err(format!(
            "server.grpc_listen {grpc:?} is not an IP:PORT address (e.g. \"127.0.0.1:50051\")"
        )
        .into());
    };
    let clash = http
        .into_iter()
        .flatten()
        .any(|l| l.parse::<SocketAddr>().is_ok_and(|l| l == addr));
    if clash && addr.port() != 0 {
        return Err(format!("server.grpc_listen {addr} is an HTTP listener's address").into());
    }
    Ok(())
}

fn check_admin_listen(admin: &str, listen: &str) -> Result<(), InvalidSetting> {
    let Ok(addr) = admin.parse::<SocketAddr>() else {
        return Err(format!("server.admin_listen {admin:?} is not an IP:PORT address").into());
    };
    let private = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback() || ip.is_private(),
        std::net::IpAddr::V6(ip) => ip.is_loopback() || ip.is_unique_local(),
    };
    if !private {
        return Err(format!(
            "server.admin_listen {addr} is not a loopback or private address: the operator lane \
             has no admission limit and must not face clients (in Kubernetes, bind it to the \
             pod's IP, e.g. TRADESERVE_SERVER__ADMIN_LISTEN=$(POD_IP):9091)"
        )
        .into());
    }
    if listen
        .parse::<SocketAddr>()
        .is_ok_and(|l| l == addr && addr.port() != 0)
    {
        return Err(format!("server.admin_listen {addr} is server.listen's address").into());
    }
    Ok(())
}
