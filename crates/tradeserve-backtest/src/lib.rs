//! Judging a model set before it trades: `tradeserve backtest` (issue 28).
//!
//! - [`stats`]: performance statistics of a return series — total and annual return, Sharpe and
//!   Sortino ratios, maximum drawdown, Calmar — defined exactly as `empyrical` defines them,
//!   so a desk's own tools read the same numbers (checked against `empyrical-reloaded` by the
//!   test command).

pub mod stats;
