//! The live feature source: one-minute bars from a feed (a Kafka topic, `POST /api/v1/bars`)
//! update each symbol's state as they arrive ([`series`]), after the checks every bar must pass
//! ([`bar`]); requests read the newest features — refused as stale when the newest bar is
//! older than `max_bar_age` — or those of an earlier bar from the retained history.
//! [`kafka`] is the topic's consumer; [`history`] reads the topic back as a bar history.

pub mod bar;
pub mod history;
pub mod kafka;
pub mod series;
pub mod source;

pub use bar::{Bar, Rejection};
pub use source::{Ingested, LiveConfig, LiveFeatures, SymbolStatus};
