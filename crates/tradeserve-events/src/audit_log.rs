//! The embedded event sink: an append-only JSON-lines audit log.
//!
//! `emit` is a non-blocking `try_send` into a bounded queue; a dedicated OS thread (file I/O
//! never runs on the async workers) polls the queue every millisecond, serializes each event
//! and appends it. Durability policy: the buffer is flushed to the OS after every batch, and
//! `fsync`ed at most `fsync_interval` after a write and at shutdown. A full queue refuses the event; that is counted
//! (`dropped_queue_full`) and logged — never silent. Shutdown drains everything accepted before
//! it, fsyncs, and reports how many lines were written.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tradeserve_core::event::Event;
use tradeserve_core::ports::{EmitError, EventSink};

use crate::metrics::SinkMetrics;

/// Settings of the audit log.
#[derive(Debug, Clone)]
pub struct AuditLogConfig {
    pub path: PathBuf,
    /// Events that may wait in memory before `emit` refuses more.
    pub queue_capacity: usize,
    /// Longest time between `fsync`s while events are flowing.
    pub fsync_interval: Duration,
}

/// Why the audit log could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error("cannot open audit log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log writer thread: {0}")]
    Thread(String),
}

enum Msg {
    Event(Event),
    Shutdown(SyncSender<u64>),
}

/// Handle to the audit log; cheap to share behind an `Arc`.
pub struct AuditLog {
    tx: SyncSender<Msg>,
    metrics: SinkMetrics,
    refused: AtomicU64,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Open (append) the log and start its writer thread.
    pub fn start(config: AuditLogConfig, metrics: SinkMetrics) -> Result<AuditLog, AuditLogError> {
        let open_err = |source| AuditLogError::Open {
            path: config.path.clone(),
            source,
        };
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(open_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(open_err)?;
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let m = metrics.clone();
        let path = config.path.clone();
        let interval = config.fsync_interval;
        let writer = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_loop(rx, file, &path, interval, &m))
            .map_err(|e| AuditLogError::Thread(e.to_string()))?;
        Ok(AuditLog {
            tx,
            metrics,
            refused: AtomicU64::new(0),
            writer: std::sync::Mutex::new(Some(writer)),
        })
    }

    /// Write everything accepted so far, fsync, stop the writer; returns lines written in
    /// this process's lifetime. Blocks: call it from a blocking context at shutdown.
    pub fn shutdown(&self, timeout: Duration) -> Result<u64, AuditLogError> {
        let (ack_tx, ack_rx) = sync_channel(1);
        self.tx
            .send(Msg::Shutdown(ack_tx))
            .map_err(|_| AuditLogError::Thread("writer already stopped".into()))?;
        let written = ack_rx.recv_timeout(timeout).map_err(|_| {
            AuditLogError::Thread(format!("writer did not finish within {timeout:?}"))
        })?;
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.join()
                .map_err(|_| AuditLogError::Thread("writer panicked".into()))?;
        }
        Ok(written)
    }

    fn note_refused(&self, why: EmitError) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // Log the first refusal and then every power of two, so a storm cannot flood the log.
        if n.is_power_of_two() {
            tracing::error!(refused_total = n, reason = %why, "audit log refused a decision event");
        }
    }
}

impl EventSink for AuditLog {
    fn emit(&self, event: Event) -> Result<(), EmitError> {
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => {
                self.metrics.enqueued.inc();
                self.metrics.backlog.inc();
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.metrics.dropped_queue_full.inc();
                self.note_refused(EmitError::QueueFull);
                Err(EmitError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.dropped_closed.inc();
                self.note_refused(EmitError::Closed);
                Err(EmitError::Closed)
            }
        }
    }
}

/// How long the writer sleeps when it finds the queue empty. Polling instead of blocking on
/// the channel means a request never pays for waking the writer (a futex syscall and a
/// context switch per event under load); an event waits at most this long in memory.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

fn write_loop(
    rx: Receiver<Msg>,
    file: File,
    path: &Path,
    fsync_interval: Duration,
    m: &SinkMetrics,
) {
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut written = 0u64;
    let mut last_sync = Instant::now();
    let mut dirty = false;
    loop {
        let mut batch = 0usize;
        loop {
            let msg = match rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    sync(&mut out, path, m);
                    return;
                }
            };
            batch += 1;
            match msg {
                Msg::Event(event) => {
                    m.backlog.dec();
                    let line = serde_json::to_writer(&mut out, &event)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                    match line {
                        Ok(()) => {
                            written += 1;
                            m.written.inc();
                            dirty = true;
                        }
                        Err(e) => {
                            m.write_errors.inc();
                            tracing::error!(path = %path.display(), error = %e, event_id = %event.id(), "audit log write failed");
                        }
                    }
                }
                Msg::Shutdown(ack) => {
                    // Everything sent before the shutdown message is already written (FIFO).
                    sync(&mut out, path, m);
                    let _ = ack.send(written);
                    return;
                }
            }
        }
        if dirty && last_sync.elapsed() >= fsync_interval {
            sync(&mut out, path, m);
            last_sync = Instant::now();
            dirty = false;
        } else if batch > 0 {
            if let Err(e) = out.flush() {
                m.write_errors.inc();
                tracing::error!(path = %path.display(), error = %e, "audit log flush failed");
            }
        }
        if batch == 0 {
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

fn sync(out: &mut BufWriter<File>, path: &Path, m: &SinkMetrics) {
    if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_data()) {
        m.write_errors.inc();
        tracing::error!(path = %path.display(), error = %e, "audit log fsync failed");
    }
}
