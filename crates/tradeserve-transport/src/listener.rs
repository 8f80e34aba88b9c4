//! Connections: accepting them, bounding them, timing them out, and draining them.
//!
//! What this owns (and `axum::serve` does not offer):
//! - **A connection cap** (`server.max_connections`, lowered to fit under the open-files
//!   limit): one more connection is answered 503 in the error shape, closed, and counted
//!   (`tradeserve_connections_refused_total`); at most 64 refusals are answered at once, the
//!   rest are closed without an answer.
//! - **A header timeout and an idle timeout**, told apart: a per-connection watchdog closes a
//!   connection that has sent part of a request's headers for longer than
//!   `header_read_timeout` (slowloris), or has sent nothing for `idle_timeout` since its last
//!   answer. The header timeout is a total, counted from the first byte of the request however
//!   slowly the rest trickles in: the watchdog sleeps until the next deadline, but never longer
//!   than `header_read_timeout` while a connection is idle, so first bytes it was not woken
//!   for are seen in time (an idle keep-alive connection costs one timer every few seconds; a
//!   replica without connections does no work for it). (Hyper's own header timeout also runs
//!   while a keep-alive connection is idle, so it cannot be both.)
//! - **Hyper's own error responses** (a request it cannot parse: 400, 431, …) rewritten into
//!   the error shape, so every response a client sees has the same body.
//! - **Accept errors** (`EMFILE` at the fd limit) logged, rate-limited, with a pause, instead of
//!   a silent retry loop; the fd soft limit is raised to the hard limit at start.
//! - **Drain without a dropped request**, in two steps. From [`KeepAliveSwitch::turn_off`] (at
//!   SIGTERM, while the listener still accepts) every response says `Connection: close`, so
//!   keep-alive clients learn to reconnect before anything is closed under them. When the
//!   listener closes, the connections already in its backlog are still accepted and served,
//!   and [`Connections::drain`] closes each connection only between requests: one that was
//!   answered and is idle at once, one that was just accepted once its first request is
//!   answered (or after `header_read_timeout` without one), one mid-request after its
//!   response. A request that was read is answered.
//! - **A body the handler left unread** is read and discarded, or the response says
//!   `Connection: close` ([`crate::leftover`]): never a silent close.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::ConnectionMetrics;
use crate::leftover;
use crate::self_wake::AbsorbSelfWakes;
use crate::tls::Tls;

/// Limits of each connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long the rest of a body a handler left unread may take to arrive before the
    /// connection is closed instead of kept (`server.body_read_timeout`).
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The open connections and the signal that drains them.
pub struct Connections {
    tasks: JoinSet<()>,
    permits: Arc<Semaphore>,
    /// Refusals in progress (see [`MAX_REFUSING`]).
    refusing: Arc<Semaphore>,
    drain: watch::Sender<bool>,
    /// Set: every response says `Connection: close` (see [`KeepAliveSwitch`]).
    closing: Arc<AtomicBool>,
    limits: ConnLimits,
    /// TLS on every connection (`server.tls`), handshaken within `header_read_timeout`.
    tls: Option<Arc<Tls>>,
}

const IDLE: u8 = 0;
const HEADERS: u8 = 1;
const BUSY: u8 = 2;

/// Milliseconds since the first call, on the monotonic clock (cheap to keep in an atomic).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Turns keep-alive off on every connection of a [`Connections`]: from then on each response
/// says `Connection: close` and its connection closes after it.
#[derive(Clone)]
pub struct KeepAliveSwitch(Arc<AtomicBool>);

impl KeepAliveSwitch {
    pub fn turn_off(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Where a connection is in its request cycle, and since when.
struct Activity {
    state: AtomicU8,
    since_ms: AtomicU64,
    /// A response has been produced on this connection (it is not one just accepted).
    served: AtomicBool,
    /// The connections' keep-alive switch (see [`KeepAliveSwitch`]), read per response.
    closing: Arc<AtomicBool>,
}

impl Activity {
    fn new(closing: Arc<AtomicBool>) -> Activity {
        Activity {
            state: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(now_ms()),
            served: AtomicBool::new(false),
            closing,
        }
    }

    fn is_idle(&self) -> bool {
        self.state.load(Ordering::Acquire) == IDLE
    }

    fn set(&self, state: u8) {
        self.since_ms.store(now_ms(), Ordering::Relaxed);
        self.state.store(state, Ordering::Release);
    }

    /// Bytes arrived: an idle connection has started sending a request.
    fn on_read(&self) {
        if self.state.load(Ordering::Acquire) == IDLE {
            self.set(HEADERS);
        }
    }

    /// When the watchdog must close the connection, if nothing changes (`None` while busy).
    fn deadline_ms(&self, limits: &ConnLimits) -> Option<u64> {
        let since = self.since_ms.load(Ordering::Relaxed);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match self.state.load(Ordering::Acquire) {
            IDLE => Some(since.saturating_add(ms(limits.idle_timeout))),
            HEADERS => Some(since.saturating_add(ms(limits.header_read_timeout))),
            _ => None,
        }
    }
}

/// Marks a request finished however its future ends.
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.served.store(true, Ordering::Relaxed);
        self.0.set(IDLE);
    }
}

/// Files the service keeps open besides client connections (logs, models, sockets to MLflow,
/// the broker and Redis, refusals in progress), kept free under the open-files limit.
const RESERVED_FDS: u64 = 256;

/// Connections being refused at once (each for at most a second); beyond this a connection
/// over the cap is closed without an answer, so a flood cannot use up the open-files limit.
const MAX_REFUSING: usize = 64;

/// Raise the open-files soft limit to the hard limit (logged), and return the limit in force
/// (`None` when it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "raised the open-files limit");
                Some(hard)
            }
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
                Some(soft)
            }
        },
        Ok((soft, _)) => {
            tracing::debug!(limit = soft, "open-files limit already at its hard limit");
            Some(soft)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            None
        }
    }
}

/// The connection cap that holds under the open-files limit: `wanted`, or less (logged) when
/// the limit leaves no room for it, so the cap and not the fd limit refuses clients.
pub fn connection_cap(wanted: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return wanted;
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .max(1);
    if wanted > room {
        tracing::warn!(
            wanted,
            open_files_limit = limit,
            cap = room,
            "server.max_connections is above what the open-files limit allows; capping it"
        );
        return room;
    }
    wanted
}

impl Connections {
    pub fn new(limits: ConnLimits) -> Connections {
        Connections {
            tasks: JoinSet::new(),
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            drain: watch::Sender::new(false),
            closing: Arc::default(),
            limits,
            tls: None,
        }
    }

    /// Serve every connection over TLS.
    pub fn with_tls(mut self, tls: Option<Arc<Tls>>) -> Connections {
        self.tls = tls;
        self
    }

    /// The switch that makes every response of these connections close its connection.
    pub fn keep_alive_switch(&self) -> KeepAliveSwitch {
        KeepAliveSwitch(Arc::clone(&self.closing))
    }

    /// Accept connections and serve `router` on them until `stop` resolves; then accept
    /// what is already in the listener's backlog (closing the listener would reset those
    /// connections, whose clients may have sent their request). Returns with the listener
    /// closed; the connections keep running until [`Self::drain`].
    pub async fn accept_until(
        &mut self,
        listener: TcpListener,
        router: Router,
        metrics: &ConnectionMetrics,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut accept_errors = 0u64;
        loop {
            while self.tasks.try_join_next().is_some() {}
            let accepted = tokio::select! {
                () = &mut stop => {
                    self.sweep(listener, &router, metrics);
                    return;
                }
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::error!(error = %e, errors_total = accept_errors, "cannot accept a connection (at the open-files limit?); pausing accepts for 50 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.admit(stream, &router, metrics);
        }
    }

    /// Accept every connection the kernel has already queued, then close the listener (by
    /// dropping it). Plain non-blocking `accept(2)` calls until `EAGAIN`: tokio's accept
    /// answers from readiness its reactor has cached, and would miss connections the reactor
    /// has not been told of yet — each of which the close would reset after its client sent
    /// a request.
    fn sweep(&mut self, listener: TcpListener, router: &Router, metrics: &ConnectionMetrics) {
        let Ok(listener) = listener.into_std() else {
            return;
        };
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if let Ok(stream) = TcpStream::from_std(stream) {
                self.admit(stream, router, metrics);
            }
        }
    }

    /// Serve an accepted connection, or refuse it at the cap.
    fn admit(&mut self, stream: TcpStream, router: &Router, metrics: &ConnectionMetrics) {
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            metrics.refused.inc();
            // Answered while few refusals are in flight; otherwise just closed (always,
            // under TLS: a plaintext answer would mean nothing to the client).
            if self.tls.is_none()
                && let Ok(refusing) = Arc::clone(&self.refusing).try_acquire_owned()
            {
                self.tasks.spawn(async move {
                    refuse(stream).await;
                    drop(refusing);
                });
            }
            return;
        };
        self.spawn(stream, router.clone(), metrics, permit);
    }

    /// Serve an accepted connection (after its TLS handshake, under TLS) on its own task.
    fn spawn(
        &mut self,
        stream: TcpStream,
        router: Router,
        metrics: &ConnectionMetrics,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        metrics.open.inc();
        let open = metrics.open.clone();
        let conn = Conn {
            router,
            limits: self.limits,
            drain: self.drain.subscribe(),
            closing: Arc::clone(&self.closing),
        };
        let Some(tls) = &self.tls else {
            self.tasks.spawn(async move {
                serve_one(stream, conn).await;
                open.dec();
                drop(permit);
            });
            return;
        };
        let (acceptor, failed) = (tls.acceptor(), metrics.tls_handshake_failures.clone());
        self.tasks.spawn(async move {
            let handshake = acceptor.accept(stream);
            match tokio::time::timeout(conn.limits.header_read_timeout, handshake).await {
                Ok(Ok(tls_stream)) => serve_one(tls_stream, conn).await,
                Ok(Err(e)) => {
                    failed.inc();
                    tracing::debug!(error = %e, "TLS handshake failed");
                }
                Err(_) => failed.inc(),
            }
            open.dec();
            drop(permit);
        });
    }

    /// Close every connection between requests (see the module's header) and wait up to
    /// `grace` for them; returns how many were still open when it expired.
    pub async fn drain(&mut self, grace: Duration) -> usize {
        self.closing.store(true, Ordering::Relaxed);
        self.drain.send_replace(true);
        join_within(&mut self.tasks, grace).await
    }
}

/// Wait for every connection's task, at most `grace`; abort the rest and return how many.
pub(crate) async fn join_within(tasks: &mut JoinSet<()>, grace: Duration) -> usize {
    let all_closed = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_closed).await.is_ok() {
        return 0;
    }
    let left = tasks.len();
    tasks.abort_all();
    left
}

/// Answer a connection over the cap with a 503 and close it (bounded: a client that does
/// not read is dropped).
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":{"code":"too_many_connections","message":"the server is at its connection limit; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// What a connection's task is handed.
struct Conn {
    router: Router,
    limits: ConnLimits,
    drain: watch::Receiver<bool>,
    closing: Arc<AtomicBool>,
}

/// How often a draining connection that is mid-request is looked at again.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Serve one connection until it closes, times out, or is drained.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, conn: Conn) {
    let Conn {
        router,
        limits,
        mut drain,
        closing,
    } = conn;
    let activity = Arc::new(Activity::new(closing));
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&activity)));
    let service = requests(router, Arc::clone(&activity), limits.body_read_timeout);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    // hyper wakes the connection's own task while it runs (see `self_wake`): absorbed.
    let mut conn = AbsorbSelfWakes::new(builder.serve_connection(io, service));
    // Since when this connection is draining, until it has been told to close.
    let mut drained = *drain.borrow();
    let mut drain_since = drained.then(now_ms);
    loop {
        if let Some(since) = drain_since
            && closable(&activity, since, &limits)
        {
            conn.inner().graceful_shutdown();
            drain_since = None;
        }
        // Nothing wakes this loop when a request's first bytes arrive, so an idle connection
        // is looked at again every `header_read_timeout` at least: bytes that start a request
        // then move its deadline to the header timeout's, counted from their arrival, and the
        // connection is cut on time however slowly they trickle (not at the idle timeout).
        let deadline = activity.deadline_ms(&limits);
        let mut wait = match deadline {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
            None => limits.idle_timeout,
        }
        .min(limits.header_read_timeout);
        if drain_since.is_some() {
            wait = wait.min(DRAIN_POLL);
        }
        tokio::select! {
            result = &mut conn => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = drain.changed(), if !drained => {
                drained = true;
                drain_since = Some(now_ms());
            }
            () = tokio::time::sleep(wait) => {
                if activity.deadline_ms(&limits).is_some_and(|at| at <= now_ms()) {
                    let headers = activity.state.load(Ordering::Acquire) == HEADERS;
                    tracing::debug!(slow_headers = headers, "closing a connection: timed out");
                    return;
                }
            }
        }
    }
}

/// Whether a draining connection may be closed now: only between requests, and one that was
/// just accepted only after its first request (its client connected to send one) or after
/// `header_read_timeout` without it. Mid-request, its response says `Connection: close`.
fn closable(activity: &Activity, drain_since: u64, limits: &ConnLimits) -> bool {
    if !activity.is_idle() {
        return false;
    }
    let header_ms = u64::try_from(limits.header_read_timeout.as_millis()).unwrap_or(u64::MAX);
    activity.served.load(Ordering::Relaxed) || now_ms() >= drain_since.saturating_add(header_ms)
}

/// The connection's service: each request to the router, marked busy while it runs; a body
/// the handler left is settled ([`leftover`]), and once keep-alive is off the response says
/// `Connection: close`.
fn requests(
    router: Router,
    activity: Arc<Activity>,
    body_wait: Duration,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<
        Output = Result<axum::response::Response, std::convert::Infallible>,
    > + Send,
> + Clone {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        activity.set(BUSY);
        let guard = BusyGuard(Arc::clone(&activity));
        let (request, leftover) = leftover::track(request);
        let call = router.clone().oneshot(request);
        async move {
            let mut response = match call.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            leftover.settle(&mut response, body_wait).await;
            if guard.0.closing.load(Ordering::Relaxed) {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            drop(guard);
            Ok(response)
        }
    })
}

/// The socket as hyper sees it: reads mark activity; hyper's own error responses (an empty
/// 4xx/5xx, for a request that never reached the router) are replaced by the error shape.
struct Watched<S> {
    stream: S,
    activity: Arc<Activity>,
    /// A rewritten response being written, and the length hyper asked to write.
    rewrite: Option<(Vec<u8>, usize, usize)>,
}

impl<S> Watched<S> {
    fn new(stream: S, activity: Arc<Activity>) -> Watched<S> {
        Watched {
            stream,
            activity,
            rewrite: None,
        }
    }
}

/// Hyper's own response to a request it could not parse (`HTTP/1.1 4xx …` with no body),
/// rebuilt with the error-shape body and `Connection: close`.
fn error_shape(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let status: u16 = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    if !(400..600).contains(&status) || !text.contains("content-length: 0\r\n") {
        return None;
    }
    let (code, message) = match status {
        400 => ("bad_request", "the request could not be parsed as HTTP/1.1"),
        408 => ("request_timeout", "the request was not received in time"),
        413 => ("body_too_large", "the request body is too large"),
        414 => ("uri_too_long", "the request URI is too long"),
        431 => (
            "headers_too_large",
            "the request headers are too large or too many",
        ),
        501 => ("not_implemented", "this HTTP feature is not supported"),
        505 => ("http_version_not_supported", "only HTTP/1.x is served"),
        _ => ("bad_request", "the request was refused by the HTTP layer"),
    };
    let reason = text.get(13..)?.split("\r\n").next().unwrap_or("");
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Our own responses always carry a body; an empty 4xx/5xx is hyper's.
        if this.rewrite.is_none()
            && let Some(shaped) = error_shape(buf)
        {
            this.rewrite = Some((shaped, 0, buf.len()));
        }
        if let Some((bytes, written, asked)) = &mut this.rewrite {
            while *written < bytes.len() {
                match Pin::new(&mut this.stream).poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => *written += n,
                    other => return other,
                }
            }
            let asked = *asked;
            this.rewrite = None;
            return Poll::Ready(Ok(asked));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands each response over as one buffer, which the rewrite
    // above needs (and a small JSON response is one write either way).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_under_the_open_files_limit() {
        assert_eq!(connection_cap(10_000, Some(20_000)), 10_000);
        assert_eq!(
            connection_cap(10_000, Some(1024)),
            1024 - RESERVED_FDS as usize
        );
        assert_eq!(connection_cap(10_000, Some(100)), 1);
        assert_eq!(connection_cap(10_000, None), 10_000);
    }

    #[test]
    fn hyper_error_responses_get_the_error_shape() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 04:00:00 GMT\r\n\r\n";
        let shaped = String::from_utf8(error_shape(head).unwrap()).unwrap();
        let (head, body) = shaped.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "headers_too_large");
        // A response of ours (it has a body) is left alone.
        assert!(error_shape(b"HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(error_shape(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
