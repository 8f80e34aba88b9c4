//! Connection threads: one single-threaded runtime per core, each serving the connections it
//! is given from start to end.
//!
//! Used when `server.connections = "pinned"`. Why: while a `POST` is handled its connection task
//! is woken during its own poll, and the work-stealing runtime answers every such wake by waking
//! a parked worker (a futex call and a context switch on another core, which then often steals
//! the task and its cache). Measured in BENCHMARKS.md (issue 16): 1.5 futex calls and 0.9 extra
//! context switches per decision, about 8 µs of CPU. A connection pinned to one thread wakes
//! nobody.
//!
//! The cost is balance: a connection never moves, so each new one goes to the thread with the
//! fewest open connections, and while a thread is preempted its connections wait (a higher p99
//! when other processes share the cores). Everything else (accepting, background tasks,
//! blocking work) stays on the main runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The connection threads; stopped (their runtimes dropped on their own threads) on drop.
pub struct ConnThreads {
    threads: Vec<ConnThread>,
}

struct ConnThread {
    handle: Handle,
    open: Arc<AtomicUsize>,
    /// Dropping it ends the thread.
    _stop: oneshot::Sender<()>,
}

/// Counts one connection on its thread while it is held.
pub struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnThreads {
    /// Start `n` threads (at least one), named `conn-0`, `conn-1`, ….
    pub fn start(n: usize) -> std::io::Result<ConnThreads> {
        let threads = (0..n.max(1))
            .map(start_one)
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(ConnThreads { threads })
    }

    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// The runtime of the thread with the fewest open connections, and the count's guard.
    pub fn pick(&self) -> Option<(&Handle, OpenGuard)> {
        let t = self
            .threads
            .iter()
            .min_by_key(|t| t.open.load(Ordering::Relaxed))?;
        t.open.fetch_add(1, Ordering::Relaxed);
        Some((&t.handle, OpenGuard(Arc::clone(&t.open))))
    }

    /// Open connections on each thread.
    pub fn open(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|t| t.open.load(Ordering::Relaxed))
            .collect()
    }
}

fn start_one(i: usize) -> std::io::Result<ConnThread> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("conn-{i}"))
        .spawn(move || {
            // Until the owner is dropped; then the runtime (and any task left) goes here.
            let _ = runtime.block_on(stopped);
        })?;
    Ok(ConnThread {
        handle,
        open: Arc::new(AtomicUsize::new(0)),
        _stop: stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_goes_to_the_least_loaded_thread() {
        let threads = ConnThreads::start(3).expect("threads");
        let a = threads.pick().expect("a").1;
        let b = threads.pick().expect("b").1;
        let c = threads.pick().expect("c").1;
        assert_eq!(threads.open(), vec![1, 1, 1]);
        drop(b);
        assert_eq!(threads.open(), vec![1, 0, 1]);
        let d = threads.pick().expect("d").1;
        assert_eq!(threads.open(), vec![1, 1, 1]);
        drop((a, c, d));
        assert_eq!(threads.open(), vec![0, 0, 0]);
    }

    #[test]
    fn a_task_runs_on_its_connection_thread() {
        let threads = ConnThreads::start(2).expect("threads");
        let (handle, _guard) = threads.pick().expect("pick");
        let name = handle
            .block_on(handle.spawn(async { std::thread::current().name().map(str::to_owned) }));
        assert_eq!(name.expect("joined").as_deref(), Some("conn-0"));
    }
}
