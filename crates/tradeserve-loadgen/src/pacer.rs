//! Releases request slots at their scheduled times from a dedicated OS thread.
//!
//! tokio's timer has millisecond resolution, far too coarse for sub-millisecond latencies
//! measured from the scheduled time; `nanosleep` with a 1 µs timer slack is accurate to a few
//! microseconds. Slots that are already due are released together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request to send: its index and scheduled send time.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub index: u64,
    pub scheduled: Instant,
}

/// Release `total` slots, `interval` apart from `start`, or fewer if `stop` is set first;
/// returns how many were released.
pub fn spawn(
    tx: async_channel::Sender<Slot>,
    start: Instant,
    interval: Duration,
    total: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        if let Err(e) = nix::sys::prctl::set_timerslack(1_000) {
            tracing::warn!(error = %e, "cannot lower the timer slack; pacing may lag by ~50 µs");
        }
        let mut i = 0u64;
        while i < total && !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while i < total {
                let scheduled = start + interval.mul_f64(i as f64);
                if scheduled > now {
                    break;
                }
                if tx
                    .try_send(Slot {
                        index: i,
                        scheduled,
                    })
                    .is_err()
                {
                    return i;
                }
                i += 1;
            }
            if i < total {
                let next = start + interval.mul_f64(i as f64);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }
        i
    })
}
