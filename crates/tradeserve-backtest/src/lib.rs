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
//! - [`history`]: the bars a run is over and the part of them it decides.
//! - [`report`]: what a run comes to, per symbol and overall.
//! - [`comparison`]: several model sets over one history side by side, with their curves (the
//!   backtest's JSON), drawn as a terminal [`table`] and a self-contained [`html`] page.

pub mod comparison;
pub mod engine;
pub mod history;
pub mod html;
pub mod portfolio;
pub mod report;
pub mod stats;
pub mod table;
