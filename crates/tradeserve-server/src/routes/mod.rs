//! HTTP handlers: each extracts its input, calls one core function, maps the result.

pub mod ops;
pub mod predict;
