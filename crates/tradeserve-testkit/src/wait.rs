//! Waiting in tests without asserting speed. A test waits for what it is about (an event
//! delivered, a process ready, a rollout moved) and fails only when that never happens:
//! [`HANG`] is minutes, a bound that catches a hang and nothing else. How fast things happen
//! depends on the machine (an Intel and an AMD machine of the same kind here differ by several
//! times, and a CI runner may be busy) and is measured in benchmarks, never asserted.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for something before calling it a hang.
pub const HANG: Duration = Duration::from_secs(180);

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(20);

/// Poll `ready` until it gives a value; panic naming `what` after [`HANG`].
pub fn eventually<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(POLL);
    }
}

/// [`eventually`] for a condition.
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    eventually(what, || ready().then_some(()))
}

/// [`eventually`] in async code (sleeps on the Tokio timer).
pub async fn eventually_async<T, F>(what: &str, mut ready: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(v) = ready().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(POLL).await;
    }
}
