//! The listeners a replica serves and their drain: the trading lane (`server.listen`, every
//! route, capped at `server.max_connections`) and, when configured, the operator lane
//! (`server.admin_listen`: control, halts, models, health and metrics, no decisions, its own
//! small connection cap and no admission limit), so that an operator can halt, roll back and
//! look however many connections trading clients hold. Both share the keys and roles, TLS and
//! the drain: at SIGTERM readiness answers 503 and every response says `Connection: close` for
//! `server.drain_delay`; then both listeners close and their connections finish between
//! requests within `server.shutdown_grace`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tradeserve_transport::h2::H2Lane;
use tradeserve_transport::listener::{ConnLimits, Connections, KeepAliveSwitch};

use crate::app::{operator_router, router};
use crate::config::Config;
use crate::grpc::health::Health;
use crate::state::AppState;
use tradeserve_transport::tls::Tls;

/// The bound listeners.
pub struct Listeners {
    pub trading: TcpListener,
    pub operator: Option<TcpListener>,
    /// The gRPC listener (`server.grpc_listen`) and its services.
    pub grpc: Option<GrpcListener>,
    /// The trading lane's connection cap (`server.max_connections`, fitted under the
    /// open-files limit).
    pub max_connections: usize,
    /// TLS on both (`server.tls`).
    pub tls: Option<Arc<Tls>>,
}

/// The gRPC listener, its services, and their health status.
pub struct GrpcListener {
    pub listener: TcpListener,
    pub app: axum::Router,
    pub health: Health,
}

/// Serve until `shutdown`, then drain: readiness 503 and `Connection: close` on every
/// response for the drain delay while still serving, close the listeners, finish in-flight
/// requests within the grace period (connections close only between requests). Returns how
/// many connections were still busy when it expired.
pub async fn serve_until(
    state: &Arc<AppState>,
    listeners: Listeners,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> usize {
    let s = &config.server;
    let (mut trading, mut operator, mut grpc) = lanes(&listeners, config);
    let (closed, closing) = watch::channel(false);
    let (grpc_io, health) = match listeners.grpc {
        Some(g) => (Some((g.listener, g.app)), Some(g.health)),
        None => (None, None),
    };
    let drain_begins = Drain {
        switches: [trading.keep_alive_switch(), operator.keep_alive_switch()],
        go_away: grpc.go_away(),
        health: health.as_ref(),
        delay: s.drain_delay,
        closed,
    };
    let stop = drain_at(shutdown, state, drain_begins);
    let metrics = &state.metrics;
    let trading_metrics = metrics.connections();
    let serve_trading = trading.accept_until(
        listeners.trading,
        router(Arc::clone(state)),
        &trading_metrics,
        closed_signal(closing.clone()),
    );
    let serve_operator = async {
        if let Some(listener) = listeners.operator {
            let app = operator_router(Arc::clone(state));
            let metrics = metrics.admin_connections();
            operator
                .accept_until(listener, app, &metrics, closed_signal(closing.clone()))
                .await;
        }
    };
    let serve_grpc = async {
        if let Some((listener, app)) = grpc_io {
            let closed = closed_signal(closing.clone());
            grpc.accept_until(listener, app, &trading_metrics, closed)
                .await;
        }
    };
    tokio::join!(stop, serve_trading, serve_operator, serve_grpc);
    if let Some(health) = &health {
        health.stop();
    }
    drain(s.shutdown_grace, [&mut trading, &mut operator], &mut grpc).await
}

/// What the drain turns off when it begins, and the signal that closes the listeners.
struct Drain<'a> {
    switches: [KeepAliveSwitch; 2],
    go_away: watch::Sender<bool>,
    health: Option<&'a Health>,
    delay: Duration,
    closed: watch::Sender<bool>,
}

/// At `shutdown`: readiness 503 (and gRPC health NOT_SERVING), every HTTP response
/// `Connection: close`, every gRPC connection GOAWAY; still serving for the drain delay, then
/// the listeners close.
async fn drain_at(shutdown: impl Future<Output = ()>, state: &AppState, d: Drain<'_>) {
    shutdown.await;
    state.start_draining();
    if let Some(health) = d.health {
        health.draining().await;
    }
    d.switches.iter().for_each(KeepAliveSwitch::turn_off);
    d.go_away.send_replace(true);
    tracing::info!(
        drain_delay = ?d.delay,
        "shutdown requested: readiness answers 503 and every response says Connection: close (gRPC: GOAWAY); still serving for the drain delay"
    );
    tokio::time::sleep(d.delay).await;
    d.closed.send_replace(true);
}

/// Finish in-flight requests on every lane within `grace`: how many connections were
/// abandoned.
async fn drain(grace: Duration, http: [&mut Connections; 2], grpc: &mut H2Lane) -> usize {
    tracing::info!(?grace, "listeners closed; finishing in-flight requests");
    let [trading, operator] = http;
    let (a, b, c) = tokio::join!(
        trading.drain(grace),
        operator.drain(grace),
        grpc.drain(grace)
    );
    let abandoned = a + b + c;
    if abandoned > 0 {
        tracing::error!(
            ?grace,
            connections = abandoned,
            "grace period expired with requests still in flight; abandoned them"
        );
    }
    abandoned
}

/// The lanes' connection sets: trading, operator, gRPC.
fn lanes(listeners: &Listeners, config: &Config) -> (Connections, Connections, H2Lane) {
    let s = &config.server;
    let lane = |max_connections| {
        Connections::new(ConnLimits {
            max_connections,
            header_read_timeout: s.header_read_timeout.get(),
            body_read_timeout: s.body_read_timeout.get(),
            idle_timeout: s.idle_timeout.get(),
        })
        .with_tls(listeners.tls.clone())
    };
    let grpc = H2Lane::new(
        s.grpc_max_connections.get(),
        s.header_read_timeout.get(),
        listeners.tls.clone(),
    );
    (
        lane(listeners.max_connections),
        lane(s.admin_max_connections.get()),
        grpc,
    )
}

/// Resolves once the drain delay is over (the listeners close).
async fn closed_signal(mut closing: watch::Receiver<bool>) {
    // An error means the sender is gone, which happens only after it sent `true`.
    let _ = closing.wait_for(|closed| *closed).await;
}
