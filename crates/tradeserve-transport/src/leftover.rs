//! A request body the handler left unread, and what becomes of it once the response is ready.
//!
//! A refusal made from the headers alone (401, 403, 429, 413, …) is answered before the body is
//! read. Hyper then drops whatever of the body has not arrived yet by closing the connection,
//! without saying so in the response: a client that writes its headers and its body separately
//! gets a broken pipe instead of the refusal, and a keep-alive client loses its next request.
//! Here the body is kept when the handler drops it unfinished ([`track`]) and, before the
//! response goes out, either read and discarded (a small body, within a short time: the
//! connection stays open) or the response says `Connection: close` ([`Leftover::settle`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, EXPECT, HeaderValue};
use parking_lot::Mutex;

/// The most of an unread body that is read and discarded to keep the connection open.
pub const DISCARD_LIMIT: u64 = 64 * 1024;

/// Where a body dropped before its end is put back for [`Leftover::settle`].
type Slot = Arc<Mutex<Option<Incoming>>>;

/// A request's body as the router sees it: the same frames, and on drop before its end the
/// rest handed back.
struct Tracked {
    inner: Option<Incoming>,
    slot: Slot,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !http_body::Body::is_end_stream(&inner)
        {
            *self.slot.lock() = Some(inner);
        }
    }
}

/// What a request's unread body needs after the response: nothing for a request without one.
pub struct Leftover {
    slot: Option<Slot>,
    /// `Expect: 100-continue`: the client waits to be asked for the body; it is not asked.
    expects_continue: bool,
}

/// Hand the router the request with its body tracked (when it has one).
pub fn track(request: hyper::Request<Incoming>) -> (hyper::Request<Body>, Leftover) {
    let (parts, incoming) = request.into_parts();
    if http_body::Body::is_end_stream(&incoming) {
        let nothing = Leftover {
            slot: None,
            expects_continue: false,
        };
        return (
            hyper::Request::from_parts(parts, Body::new(incoming)),
            nothing,
        );
    }
    let expects_continue = parts
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let slot = Slot::default();
    let body = Tracked {
        inner: Some(incoming),
        slot: Arc::clone(&slot),
    };
    let leftover = Leftover {
        slot: Some(slot),
        expects_continue,
    };
    (hyper::Request::from_parts(parts, Body::new(body)), leftover)
}

impl Leftover {
    /// Before `response` goes out: discard what the handler left of the body when it is small
    /// and arrives within `wait`, else mark the response `Connection: close` (hyper closes the
    /// connection after it, since the rest of the body cannot be told from a next request).
    pub async fn settle(self, response: &mut axum::response::Response, wait: Duration) {
        let Some(slot) = self.slot else { return };
        let Some(rest) = slot.lock().take() else {
            return;
        };
        // What is left of a declared length (none for a chunked body: read up to the limit).
        let small = http_body::Body::size_hint(&rest)
            .upper()
            .is_none_or(|n| n <= DISCARD_LIMIT);
        if small && !self.expects_continue && discard(rest, wait).await {
            return;
        }
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Read `body` to its end within `wait` and [`DISCARD_LIMIT`] bytes; whether it ended.
async fn discard(mut body: Incoming, wait: Duration) -> bool {
    let read = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len() as u64);
                if seen > DISCARD_LIMIT {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(wait, read).await.unwrap_or(false)
}
