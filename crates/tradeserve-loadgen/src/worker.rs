//! One keep-alive HTTP/1.1 connection: take a slot, send, read, record; reconnect on error,
//! and after a response that says `Connection: close` (a draining server's), before sending.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::LoadError;
use crate::pacer::Slot;
use crate::report::{Outcome, Recorder};

/// Where requests go.
pub struct Target {
    pub addr: String,
    pub host: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, LoadError> {
        let uri: hyper::Uri = url.parse().map_err(|_| LoadError::Url(url.to_owned()))?;
        if uri.scheme_str() != Some("http") {
            return Err(LoadError::Url(url.to_owned()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| LoadError::Url(url.to_owned()))?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            host: authority.as_str().to_owned(),
        })
    }
}

/// What every worker shares.
pub struct Shared {
    pub target: Target,
    pub bodies: Vec<Bytes>,
    pub timeout: Duration,
    pub warmup: u64,
    pub path: String,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// `client_order_id` prefix (see `LoadConfig::order_ids`).
    pub order_ids: Option<String>,
}

impl Shared {
    /// Request `index`'s body: its symbol's, with its own `client_order_id` when asked.
    fn body(&self, index: u64) -> Bytes {
        let body = &self.bodies[(index % self.bodies.len() as u64) as usize];
        let Some(prefix) = &self.order_ids else {
            return body.clone();
        };
        // The bodies are JSON objects: the key goes in before the closing brace.
        let mut with_id = body[..body.len().saturating_sub(1)].to_vec();
        let id = serde_json::Value::String(format!("{prefix}-{index}"));
        with_id.extend_from_slice(format!(r#","client_order_id":{id}}}"#).as_bytes());
        Bytes::from(with_id)
    }
}

/// One request body per symbol.
pub fn bodies(
    symbols: &[String],
    extra: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Vec<Bytes>, serde_json::Error> {
    symbols
        .iter()
        .map(|s| {
            let mut body = extra.cloned().unwrap_or_default();
            body.insert("symbol".into(), serde_json::Value::String(s.clone()));
            serde_json::to_vec(&body).map(Bytes::from)
        })
        .collect()
}

#[derive(Deserialize)]
struct ServerTiming {
    metadata: Option<Meta>,
    decision_id: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    latency_ms: Option<f64>,
}

type Sender = http1::SendRequest<Full<Bytes>>;

/// The decision endpoint (POST with a JSON body); other paths are fetched with GET.
pub const PREDICT: &str = "/api/v1/predict";

/// Why a request got no response (counted, never shown one by one).
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Http(hyper::Error),
    /// The connection was closed before the request went out (nothing was sent).
    #[error("closed before sending: {0}")]
    NotSent(hyper::Error),
    #[error("{0}")]
    Request(hyper::http::Error),
}

async fn connect(target: &Target) -> Result<Sender, Failed> {
    let stream = tokio::net::TcpStream::connect(&target.addr)
        .await
        .map_err(Failed::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Failed::Http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A response: its status, the server's own latency, and whether the connection stays open.
struct Answer {
    status: u16,
    server_ms: Option<f64>,
    decision_id: Option<String>,
    keep_alive: bool,
}

async fn send(sender: &mut Sender, shared: &Shared, body: Bytes) -> Result<Answer, Failed> {
    sender.ready().await.map_err(Failed::NotSent)?;
    let predict = shared.path == PREDICT;
    let mut request = Request::builder()
        .method(if predict { Method::POST } else { Method::GET })
        .uri(shared.path.as_str())
        .header(hyper::header::HOST, shared.target.host.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    for (name, value) in &shared.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(if predict { body } else { Bytes::new() }))
        .map_err(Failed::Request)?;
    let response = sender.send_request(request).await.map_err(Failed::Http)?;
    let status = response.status().as_u16();
    let keep_alive = !response
        .headers()
        .get(hyper::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(Failed::Http)?
        .to_bytes();
    let timing = serde_json::from_slice::<ServerTiming>(&bytes).ok();
    let decision_id = timing.as_ref().and_then(|t| t.decision_id.clone());
    let server_ms = timing.and_then(|t| t.metadata).and_then(|m| m.latency_ms);
    Ok(Answer {
        status,
        server_ms,
        decision_id,
        keep_alive,
    })
}

/// Send on the open connection, or on a new one when there is none or it closed before the
/// request went out (a keep-alive connection the server closed between requests): such a
/// request is sent again once, since nothing of it reached the server.
async fn send_connected(
    sender: &mut Option<Sender>,
    shared: &Shared,
    body: Bytes,
) -> Result<Answer, Failed> {
    let mut retried = false;
    loop {
        let s = match sender {
            Some(s) => s,
            None => sender.insert(connect(&shared.target).await?),
        };
        match send(s, shared, body.clone()).await {
            Err(Failed::NotSent(_)) if !retried => {
                retried = true;
                *sender = None;
            }
            Ok(answer) => {
                if !answer.keep_alive {
                    *sender = None;
                }
                return Ok(answer);
            }
            Err(e) => {
                *sender = None;
                return Err(e);
            }
        }
    }
}

/// Serve slots until the pacer is done.
pub async fn run(
    shared: Arc<Shared>,
    slots: async_channel::Receiver<Slot>,
    mut rec: Recorder,
) -> Recorder {
    let mut sender: Option<Sender> = None;
    while let Ok(slot) = slots.recv().await {
        let body = shared.body(slot.index);
        let sent = tokio::time::timeout(shared.timeout, send_connected(&mut sender, &shared, body));
        let (outcome, server_ms) = match sent.await {
            Ok(Ok(answer)) => {
                if let (Some(_), Some(id)) = (&shared.order_ids, answer.decision_id) {
                    rec.acknowledge(slot.index, answer.status, id);
                }
                (Outcome::Status(answer.status), answer.server_ms)
            }
            // Nothing reached the server: no connection, or none that stayed open to send on.
            Ok(Err(Failed::Connect(_) | Failed::NotSent(_))) => (Outcome::ConnectError, None),
            Ok(Err(Failed::Http(_) | Failed::Request(_))) => (Outcome::IoError, None),
            Err(_) => {
                sender = None;
                (Outcome::Timeout, None)
            }
        };
        if slot.index >= shared.warmup {
            rec.record(outcome, slot.scheduled, server_ms);
        }
    }
    rec
}
