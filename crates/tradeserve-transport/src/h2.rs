//! The gRPC listener's connections (`server.grpc_listen`): HTTP/2 only — prior knowledge in
//! plaintext, ALPN `h2` under TLS, with the trading listener's certificates (reloaded the same
//! way) — capped at their own connection count, and drained with GOAWAY.
//!
//! The drain follows the HTTP listeners': from [`H2Lane::go_away`] (SIGTERM) every connection
//! open then is sent GOAWAY, so clients open their next calls elsewhere while the calls in
//! flight finish; a connection accepted during the drain delay is served (a GOAWAY sent as it
//! opens would race its first call) until the listener closes, when every connection is sent
//! GOAWAY and [`H2Lane::drain`] waits for the calls in flight within the grace period. A connection over the cap is closed at once and counted (an HTTP/2
//! client sees the connection refused and retries, as behind a load balancer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::ConnectionMetrics;
use crate::tls::Tls;

/// How often a client without calls in flight is pinged, and how long it has to answer.
const KEEP_ALIVE: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The gRPC listener's open connections and the signal that drains them.
pub struct H2Lane {
    tasks: JoinSet<()>,
    permits: Arc<Semaphore>,
    /// The drain began: connections open then go away.
    go_away: watch::Sender<bool>,
    /// The listener closed: every connection goes away.
    closing: watch::Sender<bool>,
    handshake_timeout: Duration,
    tls: Option<Arc<Tls>>,
}

impl H2Lane {
    /// At most `max_connections` open; TLS handshakes within `handshake_timeout`.
    pub fn new(max_connections: usize, handshake_timeout: Duration, tls: Option<Arc<Tls>>) -> Self {
        H2Lane {
            tasks: JoinSet::new(),
            permits: Arc::new(Semaphore::new(max_connections)),
            go_away: watch::channel(false).0,
            closing: watch::channel(false).0,
            handshake_timeout,
            tls,
        }
    }

    /// Tell every connection open now to go away (GOAWAY: calls in flight finish, new calls go
    /// to a new connection).
    pub fn go_away(&self) -> watch::Sender<bool> {
        self.go_away.clone()
    }

    /// Accept and serve connections with `app` until `closed` resolves; then every open
    /// connection is told to go away.
    pub async fn accept_until(
        &mut self,
        listener: TcpListener,
        app: Router,
        metrics: &ConnectionMetrics,
        closed: impl Future<Output = ()>,
    ) {
        tokio::pin!(closed);
        loop {
            let accepted = tokio::select! {
                () = &mut closed => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                metrics.refused.inc();
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            // Accepted during the drain delay: served until the listener closes.
            let go_away = match *self.go_away.borrow() {
                false => self.go_away.subscribe(),
                true => self.closing.subscribe(),
            };
            let (app, open) = (app.clone(), metrics.open.clone());
            let timeout = self.handshake_timeout;
            let Some(tls) = &self.tls else {
                self.tasks.spawn(async move {
                    let _permit = permit;
                    serve_one(stream, app, go_away, open, timeout).await;
                });
                continue;
            };
            let (acceptor, failed) = (tls.h2_acceptor(), metrics.tls_handshake_failures.clone());
            self.tasks.spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => serve_one(tls, app, go_away, open, timeout).await,
                    Ok(Err(e)) => {
                        failed.inc();
                        tracing::debug!(error = %e, "gRPC listener: TLS handshake failed");
                    }
                    Err(_) => {
                        failed.inc();
                        tracing::debug!("gRPC listener: TLS handshake timed out");
                    }
                }
            });
        }
        self.go_away.send_replace(true);
        self.closing.send_replace(true);
    }

    /// Wait for the connections' calls in flight, at most `grace`: how many connections were
    /// still open when it expired (their calls abandoned).
    pub async fn drain(&mut self, grace: Duration) -> usize {
        self.go_away.send_replace(true);
        self.closing.send_replace(true);
        crate::listener::join_within(&mut self.tasks, grace).await
    }
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4), in bytes.
const PREFACE: u64 = 24;

/// Serve one connection until it closes, or until told to go away and its calls are done,
/// or until `first_bytes` has passed without the client's preface.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    app: Router,
    mut go_away: watch::Receiver<bool>,
    open: prometheus::IntGauge,
    first_bytes: Duration,
) {
    open.inc();
    let (stream, read) = Counted::new(stream);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let told = async {
        // An error means the lane is gone: go away as well.
        let _ = go_away.wait_for(|g| *g).await;
    };
    let silent = async {
        tokio::time::sleep(first_bytes).await;
        if read.load(Ordering::Relaxed) >= PREFACE {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = conn.as_mut() => log_end(result),
        () = told => {
            conn.as_mut().graceful_shutdown();
            log_end(conn.await);
        }
        () = silent => tracing::debug!(?first_bytes, "gRPC connection closed: no HTTP/2 preface in time"),
    }
    open.dec();
}

/// A stream that counts the bytes read from it.
struct Counted<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    fn new(inner: S) -> (Counted<S>, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner,
            read: Arc::clone(&read),
        };
        (counted, read)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.read.fetch_add(n, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "gRPC connection ended with an error");
    }
}
