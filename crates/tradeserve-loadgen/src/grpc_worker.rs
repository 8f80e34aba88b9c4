//! One gRPC worker: take a slot, call `tradeserve.v1.Decisions/Predict` on one of the shared
//! HTTP/2 channels (calls multiplexed over them), record client latency, the status the REST
//! API would have answered, and the server's own `metadata.latency_ms`.

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::Channel;
use tradeserve_grpc::tradeserve::v1::PredictRequest;
use tradeserve_grpc::tradeserve::v1::decisions_client::DecisionsClient;

use crate::LoadError;
use crate::pacer::Slot;
use crate::report::{Outcome, Recorder};

/// What every gRPC worker shares.
pub struct GrpcShared {
    /// One request per symbol.
    pub requests: Vec<PredictRequest>,
    pub metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    pub timeout: Duration,
    pub warmup: u64,
    /// `client_order_id` prefix (see `LoadConfig::order_ids`).
    pub order_ids: Option<String>,
}

/// One request per symbol, with the `extra` fields the REST body would carry.
pub fn requests(
    symbols: &[String],
    extra: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Vec<PredictRequest>, LoadError> {
    let mut base = PredictRequest::default();
    for (k, v) in extra.into_iter().flatten() {
        let bad = || LoadError::Invalid(format!("--extra {k}: {v} does not fit the gRPC request"));
        match k.as_str() {
            "risk_check" => base.risk_check = Some(v.as_bool().ok_or_else(bad)?),
            "explain" => base.explain = v.as_bool().ok_or_else(bad)?,
            "timestamp" => base.timestamp = Some(v.as_str().ok_or_else(bad)?.to_owned()),
            "strategy_override" => {
                base.strategy_override = Some(v.as_str().ok_or_else(bad)?.to_owned());
            }
            _ => return Err(bad()),
        }
    }
    Ok(symbols
        .iter()
        .map(|s| PredictRequest {
            symbol: s.clone(),
            ..base.clone()
        })
        .collect())
}

/// `headers` as call metadata (names lower-cased).
pub fn metadata(
    headers: &[(String, String)],
) -> Result<Vec<(AsciiMetadataKey, AsciiMetadataValue)>, LoadError> {
    headers
        .iter()
        .map(|(n, v)| {
            let key = AsciiMetadataKey::from_bytes(n.to_ascii_lowercase().as_bytes())
                .map_err(|e| LoadError::Invalid(format!("header name {n:?}: {e}")))?;
            let value = AsciiMetadataValue::try_from(v.as_str())
                .map_err(|e| LoadError::Invalid(format!("header {n}: {e}")))?;
            Ok((key, value))
        })
        .collect()
}

/// Serve slots until the pacer is done.
pub async fn run(
    shared: Arc<GrpcShared>,
    channel: Channel,
    slots: async_channel::Receiver<Slot>,
    mut rec: Recorder,
) -> Recorder {
    let mut client = DecisionsClient::new(channel);
    while let Ok(slot) = slots.recv().await {
        let n = shared.requests.len() as u64;
        let mut message = shared.requests[(slot.index % n) as usize].clone();
        if let Some(prefix) = &shared.order_ids {
            message.client_order_id = Some(format!("{prefix}-{}", slot.index));
        }
        let mut request = tonic::Request::new(message);
        request.set_timeout(shared.timeout);
        for (k, v) in &shared.metadata {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        let sent = tokio::time::timeout(shared.timeout, client.predict(request)).await;
        let (outcome, server_ms) = match sent {
            Ok(Ok(answer)) => {
                let d = answer.into_inner();
                let status = if d.error.is_some() { 403 } else { 200 };
                let server_ms = d.metadata.as_ref().map(|m| m.latency_ms);
                if shared.order_ids.is_some() {
                    rec.acknowledge(slot.index, status, d.decision_id);
                }
                (Outcome::Status(status), server_ms)
            }
            Ok(Err(s))
                if s.code() == tonic::Code::Unavailable && s.message().contains("connect") =>
            {
                (Outcome::ConnectError, None)
            }
            Ok(Err(s)) => (
                Outcome::Status(tradeserve_grpc::rest_status(s.code())),
                None,
            ),
            Err(_) => (Outcome::Timeout, None),
        };
        if slot.index >= shared.warmup {
            rec.record(outcome, slot.scheduled, server_ms);
        }
    }
    rec
}
