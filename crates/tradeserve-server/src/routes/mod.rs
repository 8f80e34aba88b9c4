//! HTTP handlers: each extracts its input, calls one core function, maps the result.

pub mod admit;
pub mod bars;
pub mod body;
pub mod change;
pub mod experiments;
pub mod halts;
pub mod models;
pub mod ops;
pub mod outcomes;
pub mod predict;
pub mod rollouts;
pub mod stats;
