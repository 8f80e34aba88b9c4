//! Emitting every event to several sinks (`events.sink = "both"`: audit log and Kafka).

use std::sync::Arc;

use tradeserve_core::event::Event;
use tradeserve_core::ports::{EmitError, EventSink, Unhealthy};

/// Hands each event to every sink; each sink accounts for its own refusals.
pub struct FanOut {
    sinks: Vec<Arc<dyn EventSink>>,
}

impl FanOut {
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> FanOut {
        FanOut { sinks }
    }
}

impl EventSink for FanOut {
    /// Succeeds when every sink took the event; otherwise returns the first refusal (the
    /// other sinks still got it).
    fn emit(&self, event: Event) -> Result<(), EmitError> {
        let mut result = Ok(());
        let Some((last, rest)) = self.sinks.split_last() else {
            return Ok(());
        };
        for sink in rest {
            if let Err(e) = sink.emit(event.clone()) {
                result = result.and(Err(e));
            }
        }
        result.and(last.emit(event))
    }

    fn health(&self) -> Result<(), Unhealthy> {
        self.sinks.iter().try_for_each(|s| s.health())
    }
}
