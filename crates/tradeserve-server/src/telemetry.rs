//! Logs and traces.
//!
//! - The log subscriber: text or JSON lines on stderr, written by a background thread
//!   (`tracing-appender`), so a request never waits on a terminal or a log collector; if the
//!   writer falls 128k lines behind, lines are dropped rather than requests slowed.
//! - The access log (`telemetry.access_log`): one line per response (`all`) or per failed
//!   request (`errors`, the default: every decision, risk rejections included, is already in
//!   the audit log), with method, path, status, latency and the decision id.
//! - Trace export over OTLP/HTTP (`telemetry.otlp_endpoint`, off by default): the decision's
//!   span (`decision`, with its id) and one child per stage (`features`, `inference`,
//!   `explain`, `risk`, `event`), batched by a background thread. The spans are at debug level:
//!   with export off (or a filter above debug) they cost a level check.

use std::time::Duration;
use tradeserve_core::error::InvalidSetting;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing::Level;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Which responses get an access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// Every response.
    All,
    /// Failed requests: a status of 400 or more without a decision. A risk rejection (403
    /// with its decision) is a decision, in the audit log like any other, not an error.
    #[default]
    Errors,
    Off,
}

impl AccessLog {
    /// Whether a response gets a line; `decided`: it carries a decision.
    pub fn wants(self, status: u16, decided: bool) -> bool {
        match self {
            AccessLog::All => true,
            AccessLog::Errors => status >= 400 && !decided,
            AccessLog::Off => false,
        }
    }
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub access_log: AccessLog,
    /// The collector's OTLP/HTTP traces URL, e.g. `http://otel-collector:4318/v1/traces`;
    /// empty: no export.
    pub otlp_endpoint: String,
    pub otlp_protocol: OtlpProtocol,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of decisions traced (0–1; a caller's sampled parent is not followed: the service
    /// reads no trace headers).
    pub sample_ratio: f64,
    /// Deadline of each export call.
    #[serde(with = "humantime_serde")]
    pub otlp_timeout: Duration,
    /// How far back `GET /api/v1/stats` and the dashboard look (one minute by default).
    #[serde(with = "humantime_serde")]
    pub stats_window: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            access_log: AccessLog::Errors,
            otlp_endpoint: String::new(),
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            service_name: "tradeserve".into(),
            sample_ratio: 1.0,
            otlp_timeout: Duration::from_secs(5),
            stats_window: Duration::from_secs(60),
        }
    }
}

impl TelemetryConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err("telemetry.sample_ratio must be between 0 and 1".into());
        }
        let e = &self.otlp_endpoint;
        if !(e.is_empty() || e.starts_with("http://") || e.starts_with("https://")) {
            return Err("telemetry.otlp_endpoint must be an http:// or https:// URL".into());
        }
        if self.service_name.is_empty() {
            return Err("telemetry.service_name must not be empty".into());
        }
        if !(Duration::from_secs(5)..=Duration::from_secs(3600)).contains(&self.stats_window) {
            return Err("telemetry.stats_window must be between 5s and 1h".into());
        }
        Ok(())
    }
}

/// Keeps the log writer and the trace exporter alive; dropping it flushes both (call it
/// outside any async runtime: the exporter's HTTP client blocks).
pub struct Telemetry {
    _log_writer: tracing_appender::non_blocking::WorkerGuard,
    traces: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.traces.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("trace export did not flush: {e}");
        }
    }
}

/// Why logging or tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("log subscriber")]
    Subscriber(#[source] tracing_subscriber::util::TryInitError),
}

fn exporter(config: &TelemetryConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(config.otlp_endpoint.clone())
        .with_protocol(match config.otlp_protocol {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
            OtlpProtocol::HttpJson => Protocol::HttpJson,
        })
        .with_timeout(config.otlp_timeout)
        .build()
        .map_err(TelemetryError::Exporter)?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::TraceIdRatioBased(config.sample_ratio))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

/// Install the subscriber: logs (`RUST_LOG`, default `info`) in `json` or text on stderr, and
/// the trace exporter when an endpoint is configured. Colours only on a terminal (never with
/// `NO_COLOR`).
pub fn init(json: bool, config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(writer);
    let logs = match json {
        true => fmt.json().boxed(),
        false => fmt.boxed(),
    }
    .with_filter(filter);
    let traces = match config.otlp_endpoint.is_empty() {
        true => None,
        false => Some(exporter(config)?),
    };
    let spans = traces.as_ref().map(|p| {
        let targets = Targets::new()
            .with_target("tradeserve_core", Level::DEBUG)
            .with_target("tradeserve_server", Level::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("tradeserve"))
            .with_filter(targets)
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(TelemetryError::Subscriber)?;
    Ok(Telemetry {
        _log_writer: guard,
        traces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_log_keeps_what_it_says() {
        assert!(AccessLog::All.wants(200, true) && AccessLog::All.wants(403, true));
        assert!(!AccessLog::Errors.wants(200, true));
        // A risk rejection is a decision; a 403 without one (a missing role) is a failure.
        assert!(!AccessLog::Errors.wants(403, true) && AccessLog::Errors.wants(403, false));
        assert!(AccessLog::Errors.wants(503, false) && !AccessLog::Off.wants(503, false));
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut c = TelemetryConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.sample_ratio = 1.5;
        assert!(c.validate().is_err());
        c.sample_ratio = 1.0;
        c.otlp_endpoint = "collector:4318".into();
        assert!(c.validate().unwrap_err().0.contains("http://"));
    }
}
