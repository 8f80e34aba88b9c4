//! TradeServe's HTTP service and command line.
//!
//! - [`config`]: defaults, TOML file, environment overrides, validation.
//! - [`metrics`]: every Prometheus metric, named in one place ([`feed_metrics`]: the live
//!   feed's); [`stats_window`]: their last minute, for the dashboard.
//! - [`error`]: the one mapping from errors to HTTP status and stable codes.
//! - [`state`]: what handlers share (pipeline, active model set, admission control).
//! - [`registry`]: keeping the active model set in step with the MLflow registry;
//!   [`mlflow_provider`]: the registry as the control plane's model provider.
//! - [`control`]: the control plane's orchestration (the rules are `tradeserve_core::control`):
//!   store compare-and-swap, model catalog, routing snapshot, events, poller and gates.
//! - [`shadow`]: running a rollout's candidate off the request path.
//! - [`explainer`]: explanations on a bounded pool of blocking threads.
//! - [`idle`]: idle CPU priority for threads that must not compete with requests.
//! - [`risk_cli`]: `tradeserve risk` (the books' checkpoint and replay are
//!   `tradeserve_events::books`);
//!   [`risk_rebuild`]: the fleet's books summed for the shared ledger; [`ledger`]: `[ledger]`,
//!   which of the two keeps the books.
//!
//! Forensic replay (re-running recorded decisions) is the `tradeserve_replay` crate; `tradeserve
//! replay` runs it. The adapters live in their own crates and this one wires them: Redis (shared ledger,
//! idempotency keys, control store, fleet measurements and outcomes) in `tradeserve_redis`;
//! the Kafka bar feed in `tradeserve_features::live::kafka`; the remote model backends and
//! their steward in `tradeserve_models::remote`.
//! - [`drift`]: the drift monitor — live inputs against the champion's training distributions,
//!   live decisions against its backtest.
//! - [`arms`]: the arm recorder: decisions, failures, shadow runs and outcomes credited to
//!   experiment and rollout arms; [`outcomes`]: the window of decisions awaiting an outcome.
//! - [`app`]: the router and request-timing middleware; [`routes`]: the handlers.
//! - Connections (the cap, header and idle timeouts, hyper's own errors in the error shape,
//!   draining), TLS and the absorbing of the wakes hyper gives a connection's own task are the
//!   `tradeserve_transport` crate; [`lanes`] hands it the routers of the trading and operator
//!   lanes and drains both.
//! - [`telemetry`]: the log subscriber, the access log and the optional OTLP trace export.
//! - [`serve`]: start-up (build the embedded adapters, bind) and graceful shutdown.
//! - [`cli`]: the `tradeserve` subcommands ([`market_publish`]: a bars CSV into the market
//!   data topic; [`backtest`]: model sets judged over a bar history).

pub mod app;
pub mod arms;
pub mod auth;
pub mod backtest;
pub mod cli;
pub mod config;
pub mod control;
pub mod drift;
pub mod error;
pub mod explainer;
pub mod feed_metrics;
pub mod grpc;
pub mod idle;
pub mod lanes;
pub mod ledger;
pub mod market_publish;
pub mod metrics;
pub mod mlflow_provider;
pub mod openapi;
pub mod outcomes;
pub mod registry;
pub mod risk_cli;
pub mod risk_rebuild;
pub mod routes;
pub mod serve;
pub mod shadow;
pub mod state;
pub mod stats_window;
pub mod telemetry;
