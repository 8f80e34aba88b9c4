//! How bytes reach the service: accepting, capping and draining connections ([`listener`]),
//! TLS with certificate reload ([`tls`]), and the wake-up handling of a connection's task
//! ([`self_wake`]). Nothing here knows a route or a decision: the server hands in its router
//! and the counters to keep ([`ConnectionMetrics`]).

pub mod h2;
pub mod leftover;
pub mod listener;
pub mod self_wake;
pub mod tls;

/// The counters the listener keeps (registered by the server's metrics).
#[derive(Clone)]
pub struct ConnectionMetrics {
    /// Open client connections.
    pub open: prometheus::IntGauge,
    /// Connections refused at the cap.
    pub refused: prometheus::IntCounter,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: prometheus::IntCounter,
}
