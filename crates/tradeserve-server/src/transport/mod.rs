//! How bytes reach the service: accepting and draining connections ([`listener`]), TLS
//! ([`tls`]), and the wake-up handling of a connection's task ([`self_wake`]). Nothing here
//! knows a route or a decision.

pub mod listener;
pub mod self_wake;
pub mod tls;
