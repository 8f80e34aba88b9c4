//! TradeServe's Redis adapters, each behind a port of `tradeserve_core::ports`, so that many
//! replicas share one state:
//!
//! - [`conn`]: the connection every adapter uses (made on first use, with a deadline on every
//!   call); [`error`]: why a call gave no answer.
//! - [`risk_ledger`]: the shared risk ledger ([`tradeserve_core::ports::RiskLedger`]): one Lua
//!   script checks and applies an order; a ledger that lost its data fails closed.
//! - [`rebuild`]: writing a rebuilt ledger under a new generation (the sums come from the
//!   replicas' audit logs, which the server reads).
//! - [`idempotency`]: idempotency keys for the fleet
//!   ([`tradeserve_core::idempotency::IdempotencyStore`]).
//! - [`control_store`]: the control state ([`tradeserve_core::ports::ControlStore`]).
//! - [`fleet_shares`]: each replica's measurements of experiments and rollouts
//!   ([`tradeserve_core::ports::FleetShares`]).
//! - [`outcomes`]: outcomes credited once fleet-wide
//!   ([`tradeserve_core::ports::FleetOutcomes`]).
//! - [`quotas`]: API-key quotas for the fleet ([`tradeserve_auth::quota::SharedQuotas`]): one
//!   GCRA step per request.
//!
//! Nothing here depends on the server: it names no configuration section, only what each
//! adapter needs (a URL, a key prefix, a deadline).

pub mod conn;
pub mod control_store;
pub mod error;
pub mod fleet_shares;
pub mod idempotency;
pub mod outcomes;
pub mod quotas;
pub mod rebuild;
pub mod risk_ledger;

pub use error::RedisError;

/// The URL as logs may show it: a password (`redis://:secret@host`) is never printed.
pub fn shown_url(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, host)) => format!("redis://…@{host}"),
        None => url.to_owned(),
    }
}

/// Whether `url` is a Redis URL this crate can open (nothing is sent).
pub fn check_url(url: &str) -> Result<(), RedisError> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| RedisError::Url(e.to_string()))
}
