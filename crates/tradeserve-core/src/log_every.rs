//! A log line that repeats per request — a store that is down, every request refused for it —
//! written at most once per period, saying how many were held back, so an outage at full load
//! leaves a readable log instead of thousands of identical lines a second.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one line per `period` (see the module docs).
#[derive(Debug)]
pub struct LogEvery {
    period_ms: u64,
    /// Milliseconds since [`epoch`] when the last line may have been written, plus one (0:
    /// never).
    last: AtomicU64,
    held_back: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl LogEvery {
    pub const fn new(period: Duration) -> LogEvery {
        LogEvery {
            period_ms: period.as_millis() as u64,
            last: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line is due now (`n` lines were held back since the last one), else
    /// `None` (this one is counted as held back).
    pub fn due(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.period_ms;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let every = LogEvery::new(Duration::from_secs(3600));
        assert_eq!(every.due(), Some(0));
        for _ in 0..999 {
            assert_eq!(every.due(), None);
        }
        // A period of zero lets every line through, each saying none were held back.
        let always = LogEvery::new(Duration::ZERO);
        assert_eq!(always.due(), Some(0));
        assert_eq!(always.due(), Some(0));
    }
}
