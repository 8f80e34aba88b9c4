//! Judging a model set before it trades: `tradeserve backtest` (issue 28).
//!
//! - [`stats`]: performance statistics of a return series — total and annual return, Sharpe and
//!   Sortino ratios, maximum drawdown, Calmar — defined exactly as `empyrical` defines them,
//!   so a desk's own tools read the same numbers (checked against `empyrical-reloaded` by the
//!   test command).
//! - [`engine`]: the run — the service's own pipeline over a bar history on a virtual clock,
//!   approved orders filled into the book, each order's next-bar outcome.
//! - [`portfolio`]: the book a backtest keeps — cash and positions from its fills, marked at
//!   each step into the equity curve and the returns the statistics are taken over, with
//!   turnover and exposure.
//! - [`report`]: what a run comes to, per symbol and overall (the backtest's JSON).

pub mod engine;
pub mod portfolio;
pub mod report;
pub mod stats;
