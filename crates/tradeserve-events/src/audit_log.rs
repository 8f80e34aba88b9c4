//! The embedded event sink: an append-only JSON-lines audit log, rotated by size.
//!
//! **Acknowledgement.** [`EventSink::emit`] serializes the event and appends the line with
//! `write(2)` before it returns, so a decision is answered only once its event is in the
//! kernel: a process crash (kill -9, panic, OOM kill) loses nothing that was acknowledged. The
//! append is a copy into the page cache (a few microseconds, measured in BENCHMARKS.md); the
//! lock around it is held for that copy only, never across an `.await`.
//!
//! **Group commit.** A syncer thread `fdatasync`s at most `fsync_interval` after the first
//! unsynced line and parks while nothing is written (an idle replica costs nothing). The
//! machine-crash window — power loss or a kernel panic — is therefore `fsync_interval` plus
//! one `fdatasync`.
//!
//! **Failure.** A write that fails (`ENOSPC`, `EIO`, …) is cut back to the last whole line, so
//! no torn or glued line is left, and the event is refused with [`EmitError::Write`]. The sink
//! then reports unhealthy (gauge, counter, a rate-limited error log, `health()`) until a write
//! succeeds again or the syncer's probe finds the file writable with room on its filesystem;
//! recovery needs nobody.
//!
//! **Start.** A torn last line (a crash in the middle of a write) is cut and reported with its
//! byte offset; the next event starts on a line of its own. A filesystem without room for well
//! over one event makes the sink unhealthy from the start (until the probe finds room), so a
//! replica started on a full disk is never ready.
//!
//! **Rotation.** When the active file passes `rotate_bytes` it is renamed to
//! `<stem>.<UTC time>.<ext>` and a new one is opened; the syncer fsyncs the retired file, then
//! (on a thread of its own, so group commit goes on) calls the [`RetireHook`] — the risk books'
//! checkpoint — and only when that succeeds deletes the oldest rotated files beyond
//! `retain_files`: retention never deletes a file the books do not yet carry. [`files`] lists a
//! log's files in order, for every reader.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tradeserve_core::event::Event;
use tradeserve_core::ports::{EmitError, EventSink, Unhealthy};

use crate::chain::{Chain, ChainKey};
use crate::metrics::SinkMetrics;

/// Settings of the audit log.
#[derive(Debug, Clone)]
pub struct AuditLogConfig {
    pub path: PathBuf,
    /// Longest time between the first unsynced line and its `fdatasync`.
    pub fsync_interval: Duration,
    /// The active file is rotated once it holds at least this many bytes.
    pub rotate_bytes: u64,
    /// Rotated files kept (the oldest beyond are deleted); 0 keeps every file.
    pub retain_files: usize,
    /// While failing, how often the syncer checks whether writing can resume.
    pub probe_interval: Duration,
    /// Chain the lines (each carries the hash of the one before: [`crate::chain`]).
    pub chain: Option<ChainKey>,
    /// Called with the log's path after files were rotated and before retention deletes any.
    pub on_retired: Option<RetireHook>,
}

/// What must happen before retention may delete rotated files (`Err`: none is deleted this
/// time; the error is logged and the next rotation tries again).
#[derive(Clone)]
pub struct RetireHook(pub Arc<RetireFn>);

/// What a [`RetireHook`] runs, given the log's path.
pub type RetireFn = dyn Fn(&Path) -> Result<(), RetireError> + Send + Sync;

/// Why a [`RetireHook`] did not finish (any error of the hook's own).
pub type RetireError = Box<dyn std::error::Error + Send + Sync>;

impl std::fmt::Debug for RetireHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetireHook")
    }
}

impl AuditLogConfig {
    /// Defaults for everything but the path.
    pub fn new(path: PathBuf) -> AuditLogConfig {
        AuditLogConfig {
            path,
            fsync_interval: Duration::from_secs(1),
            rotate_bytes: 256 * 1024 * 1024,
            retain_files: 40,
            probe_interval: Duration::from_secs(1),
            chain: None,
            on_retired: None,
        }
    }
}

/// Why the audit log could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error("cannot open audit log {path}: {cause}")]
    Open {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("audit log writer thread: {0}")]
    Thread(String),
}

/// Where an appended line is: the file generation (see [`AuditLog::retire_to`]) and its
/// byte range in that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineAt {
    pub generation: u64,
    pub range: std::ops::Range<u64>,
}

/// A torn last line found (and cut) at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset where the torn line began (the file's new length).
    pub offset: u64,
    /// Bytes cut.
    pub bytes: u64,
}

/// The file being appended to, and how long it is (everything before `len` is whole lines).
struct Active {
    file: Arc<File>,
    len: u64,
    /// Files retired by [`AuditLog::retire_to`] so far: tells a line's file apart.
    generation: u64,
    /// A failed write could not be cut back: refuse until a cut succeeds.
    torn: bool,
    /// The hash chain's head, when lines are chained.
    chain: Option<Chain>,
}

/// What the syncer works on; guarded by `Syncer::state`.
struct SyncWork {
    current: Arc<File>,
    /// Files rotated out, to fsync once more before they are closed.
    retired: Vec<Arc<File>>,
    stop: bool,
}

struct Syncer {
    state: Mutex<SyncWork>,
    wake: Condvar,
    /// Lines appended since the last `fdatasync`.
    dirty: AtomicBool,
}

/// Health of the sink: whether it can record events now, and the last error.
struct Health {
    failing: AtomicBool,
    reason: Mutex<String>,
    /// Failed writes, for the rate-limited log.
    failures: AtomicU64,
}

impl Health {
    /// Healthy, unless the disk is already full: then unhealthy from the first moment
    /// (readiness 503), not from the first decision that fails; the syncer's probe lifts it
    /// once there is room.
    fn at_start(path: &Path, metrics: &SinkMetrics) -> Health {
        let room = has_room(path, START_ROOM);
        let reason = if room {
            String::new()
        } else {
            tracing::error!(path = %path.display(), "audit log: no room on its filesystem at start; refusing decisions until there is");
            "no room on the audit log's filesystem".to_owned()
        };
        metrics.unavailable.set(i64::from(!room));
        Health {
            failing: AtomicBool::new(!room),
            reason: Mutex::new(reason),
            failures: AtomicU64::new(0),
        }
    }
}

/// Handle to the audit log; cheap to share behind an `Arc`.
pub struct AuditLog {
    config: AuditLogConfig,
    active: Mutex<Active>,
    syncer: Arc<Syncer>,
    health: Arc<Health>,
    metrics: SinkMetrics,
    closed: AtomicBool,
    written: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Open (append) the log, cutting a torn last line, and start the syncer thread.
    pub fn start(config: AuditLogConfig, metrics: SinkMetrics) -> Result<AuditLog, AuditLogError> {
        let open_err = |cause| AuditLogError::Open {
            path: config.path.clone(),
            cause,
        };
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(open_err)?;
        }
        if let Some(torn) = repair_tail(&config.path).map_err(open_err)? {
            tracing::warn!(
                path = %config.path.display(),
                offset = torn.offset,
                bytes = torn.bytes,
                "audit log ended in a torn line (a crash during a write); cut it at this offset"
            );
        }
        let chain = match &config.chain {
            Some(key) => Some(Chain::resume(key.clone(), &files(&config.path)).map_err(open_err)?),
            None => None,
        };
        let file = Arc::new(open_append(&config.path).map_err(open_err)?);
        let len = file.metadata().map_err(open_err)?.len();
        let syncer = Arc::new(Syncer {
            state: Mutex::new(SyncWork {
                current: Arc::clone(&file),
                retired: Vec::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            dirty: AtomicBool::new(false),
        });
        let health = Arc::new(Health::at_start(&config.path, &metrics));
        let thread = {
            let (syncer, health, metrics) = (syncer.clone(), health.clone(), metrics.clone());
            let config = config.clone();
            std::thread::Builder::new()
                .name("audit-sync".into())
                .spawn(move || sync_loop(&syncer, &health, &metrics, &config))
                .map_err(|e| AuditLogError::Thread(e.to_string()))?
        };
        Ok(AuditLog {
            config,
            active: Mutex::new(Active {
                file,
                len,
                generation: 0,
                torn: false,
                chain,
            }),
            syncer,
            health,
            metrics,
            closed: AtomicBool::new(false),
            written: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Fsync and stop the syncer; returns lines written in this process's lifetime. Blocks
    /// up to `timeout` for the last fsync (a stuck disk must not hang the shutdown): call it
    /// from a blocking context. Later events are refused (`Closed`).
    pub fn shutdown(&self, timeout: Duration) -> Result<u64, AuditLogError> {
        self.closed.store(true, Ordering::SeqCst);
        // Take the writer lock so no append is in progress past this point.
        let active = self.active.lock();
        if let Some(chain) = &active.chain {
            // Kept elsewhere (the service's log), it shows a log cut short at its end.
            tracing::info!(path = %self.config.path.display(), head = %chain.head(), "audit log closed; its hash chain ends here");
        }
        drop(active);
        self.syncer.state.lock().stop = true;
        self.syncer.wake.notify_one();
        if let Some(h) = self.thread.lock().take() {
            let deadline = std::time::Instant::now() + timeout;
            while !h.is_finished() {
                if std::time::Instant::now() >= deadline {
                    return Err(AuditLogError::Thread(format!(
                        "the last fsync did not finish within {timeout:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            h.join()
                .map_err(|_| AuditLogError::Thread("syncer panicked".into()))?;
        }
        Ok(self.written.load(Ordering::SeqCst))
    }

    /// Append `line`, then call `then` with where it is while still holding the writer lock
    /// (so whatever `then` hands it to sees lines in file order). `ready` runs first, under
    /// the lock, and may refuse the line before anything is written.
    fn append<R>(
        &self,
        line: &[u8],
        ready: impl FnOnce() -> Result<(), EmitError>,
        then: impl FnOnce(LineAt) -> R,
    ) -> Result<R, EmitError> {
        let mut active = self.active.lock();
        if self.closed.load(Ordering::SeqCst) {
            return Err(EmitError::Closed);
        }
        ready()?;
        if active.torn {
            let len = active.len;
            active
                .file
                .set_len(len)
                .map_err(|e| self.failed(&e, "cannot cut a torn line"))?;
            active.torn = false;
        }
        // Chained: the line gets the hash of the one before it, under this lock (file order).
        let sealed = active
            .chain
            .as_ref()
            .map(|c| c.seal(line.strip_suffix(b"\n").unwrap_or(line)));
        let line = sealed.as_ref().map_or(line, |(l, _)| l.as_slice());
        if let Err((e, partial)) = write_all(&active.file, line) {
            if partial > 0 {
                let len = active.len;
                active.torn = active.file.set_len(len).is_err();
            }
            return Err(self.failed(&e, "write failed"));
        }
        if let (Some(chain), Some((_, head))) = (active.chain.as_mut(), sealed.as_ref()) {
            chain.advance(*head);
        }
        let start = active.len;
        active.len += line.len() as u64;
        let result = then(LineAt {
            generation: active.generation,
            range: start..active.len,
        });
        if active.len >= self.config.rotate_bytes {
            self.rotate(&mut active);
        }
        drop(active);
        self.written.fetch_add(1, Ordering::Relaxed);
        self.metrics.enqueued.inc();
        self.metrics.written.inc();
        if self.health.failing.swap(false, Ordering::SeqCst) {
            self.metrics.unavailable.set(0);
            tracing::info!(path = %self.config.path.display(), "audit log writable again");
        }
        if !self.syncer.dirty.swap(true, Ordering::SeqCst) {
            // Clean → dirty: wake the syncer (once per group commit, not per line).
            let _guard = self.syncer.state.lock();
            self.syncer.wake.notify_one();
        }
        Ok(result)
    }

    /// Serialize `event` as one line, append it, and hand `then` its byte range, the event
    /// and the line (without its newline) under the writer lock (see [`Self::append`]);
    /// `ready` may refuse it first.
    pub fn append_event<R>(
        &self,
        event: Event,
        ready: impl FnOnce() -> Result<(), EmitError>,
        then: impl FnOnce(LineAt, Event, &[u8]) -> R,
    ) -> Result<R, EmitError> {
        let mut line = Vec::with_capacity(2048);
        if let Err(e) = serde_json::to_writer(&mut line, &event) {
            return Err(self.failed(&std::io::Error::other(e), "cannot serialize an event"));
        }
        line.push(b'\n');
        let body = line.len() - 1;
        let result = self.append(&line, ready, |at| then(at, event, &line[..body]));
        if matches!(result, Err(EmitError::Closed)) {
            self.metrics.dropped_closed.inc();
        }
        result
    }

    /// Rename the active file to `to` and continue in a new one (the next generation),
    /// calling `on_retire(retired generation, its length)` under the writer lock so no line
    /// is appended in between. For a write-ahead log that retires delivered segments.
    pub fn retire_to(&self, to: &Path, on_retire: impl FnOnce(u64, u64)) -> std::io::Result<()> {
        let mut active = self.active.lock();
        let (generation, len) = (active.generation, active.len);
        self.move_to(&mut active, to)?;
        on_retire(generation, len);
        Ok(())
    }

    /// Rename the active file to `to` and continue in a new one (the next generation); the
    /// syncer fsyncs the old one once more. On failure the active file keeps its name.
    fn move_to(&self, active: &mut Active, to: &Path) -> std::io::Result<()> {
        let path = &self.config.path;
        std::fs::rename(path, to)?;
        let file = match open_append(path) {
            Ok(f) => f,
            Err(e) => {
                // Put the name back so writers and readers keep finding the active file.
                let _ = std::fs::rename(to, path);
                return Err(e);
            }
        };
        let old = std::mem::replace(&mut active.file, Arc::new(file));
        active.generation += 1;
        active.len = 0;
        {
            let mut work = self.syncer.state.lock();
            work.retired.push(old);
            work.current = Arc::clone(&active.file);
        }
        self.syncer.dirty.store(true, Ordering::SeqCst);
        self.syncer.wake.notify_one();
        Ok(())
    }

    /// Count, report and log (rate-limited) a failed write.
    fn failed(&self, e: &std::io::Error, what: &str) -> EmitError {
        self.metrics.write_errors.inc();
        self.metrics.unavailable.set(1);
        *self.health.reason.lock() =
            format!("audit log {}: {what}: {e}", self.config.path.display());
        if !self.health.failing.swap(true, Ordering::SeqCst) {
            // Under the syncer's lock, so the wake cannot fall between its check of `failing`
            // and its wait (it would then wait without a timeout and never probe).
            let _guard = self.syncer.state.lock();
            self.syncer.wake.notify_one();
        }
        let n = self.health.failures.fetch_add(1, Ordering::Relaxed) + 1;
        // The first failure and then every power of two: a storm cannot flood the log.
        if n.is_power_of_two() {
            tracing::error!(path = %self.config.path.display(), error = %e, failures_total = n, "audit log cannot record decisions: {what}");
        }
        EmitError::Write(e.kind())
    }

    /// Retire the active file under a rotated name and open a new one. A failure keeps the
    /// current file (logged; retried at the next append).
    fn rotate(&self, active: &mut Active) {
        let rotated = rotated_name(&self.config.path);
        match self.move_to(active, &rotated) {
            Ok(()) => tracing::info!(rotated = %rotated.display(), "audit log rotated"),
            Err(e) => {
                tracing::error!(path = %self.config.path.display(), error = %e, "audit log rotation failed; still appending")
            }
        }
    }
}

impl EventSink for AuditLog {
    fn emit(&self, event: Event) -> Result<(), EmitError> {
        self.append_event(event, || Ok(()), |_, _, _| ())
    }

    fn health(&self) -> Result<(), Unhealthy> {
        if self.health.failing.load(Ordering::SeqCst) {
            Err(Unhealthy(self.health.reason.lock().clone()))
        } else {
            Ok(())
        }
    }
}

/// `write(2)` the whole line; on error, how many of its bytes reached the file.
fn write_all(mut file: &File, mut buf: &[u8]) -> Result<(), (std::io::Error, usize)> {
    let total = buf.len();
    while !buf.is_empty() {
        match file.write(buf) {
            Ok(0) => {
                return Err((
                    std::io::Error::from(std::io::ErrorKind::WriteZero),
                    total - buf.len(),
                ));
            }
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, total - buf.len())),
        }
    }
    Ok(())
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The syncer: group-commit fsyncs, retire rotated files, and probe while failing.
fn sync_loop(syncer: &Syncer, health: &Health, metrics: &SinkMetrics, config: &AuditLogConfig) {
    // The hook and retention of the last rotation, off this thread (one at a time).
    let mut retiring: Option<JoinHandle<()>> = None;
    let mut work = syncer.state.lock();
    loop {
        let failing = health.failing.load(Ordering::SeqCst);
        if !work.stop && !syncer.dirty.load(Ordering::SeqCst) && work.retired.is_empty() {
            if failing {
                let _ = syncer.wake.wait_for(&mut work, config.probe_interval);
            } else {
                syncer.wake.wait(&mut work);
            }
            if health.failing.load(Ordering::SeqCst) && probe(&config.path) {
                health.failing.store(false, Ordering::SeqCst);
                metrics.unavailable.set(0);
                tracing::info!(path = %config.path.display(), "audit log has room again; accepting decisions");
            }
            continue;
        }
        let stop = work.stop;
        if !stop {
            // Group commit: let lines gather for one interval (a stop cuts the wait short).
            let _ = syncer
                .wake
                .wait_while_for(&mut work, |w| !w.stop, config.fsync_interval);
        }
        syncer.dirty.store(false, Ordering::SeqCst);
        let current = Arc::clone(&work.current);
        let retired = std::mem::take(&mut work.retired);
        let stop = work.stop;
        drop(work);
        for file in retired.iter().chain(std::iter::once(&current)) {
            if let Err(e) = file.sync_data() {
                metrics.write_errors.inc();
                tracing::error!(path = %config.path.display(), error = %e, "audit log fsync failed");
            }
        }
        if !retired.is_empty() {
            sync_dir(&config.path);
            retiring = retire_in_background(retiring, config);
        }
        if stop {
            if let Some(h) = retiring.take() {
                let _ = h.join();
            }
            return;
        }
        work = syncer.state.lock();
    }
}

/// Room a filesystem needs at start (some dozens of events).
const START_ROOM: u64 = 64 * 1024;

/// Whether writing may resume: the file opens for appending and its filesystem has room
/// for well over one event (more than at start, so a nearly full disk does not flap).
fn probe(path: &Path) -> bool {
    has_room(path, 1024 * 1024)
}

/// Whether the file opens for appending and its filesystem has `room` bytes free.
fn has_room(path: &Path, room: u64) -> bool {
    if open_append(path).is_err() {
        return false;
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s.blocks_available().saturating_mul(s.fragment_size()) >= room,
        Err(_) => false,
    }
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Run [`retire`] on a thread of its own, after the previous one (`last`) finished; inline
/// when no thread can be started.
fn retire_in_background(
    last: Option<JoinHandle<()>>,
    config: &AuditLogConfig,
) -> Option<JoinHandle<()>> {
    if let Some(h) = last {
        let _ = h.join();
    }
    let c = config.clone();
    match std::thread::Builder::new()
        .name("audit-retire".into())
        .spawn(move || retire(&c))
    {
        Ok(h) => Some(h),
        Err(_) => {
            retire(config);
            None
        }
    }
}

/// After a rotation: the hook, then retention if the hook succeeded.
fn retire(config: &AuditLogConfig) {
    if let Some(hook) = &config.on_retired
        && let Err(e) = (hook.0)(&config.path)
    {
        tracing::error!(path = %config.path.display(), error = %e, "rotated audit files kept: they could not be checkpointed");
        return;
    }
    prune(&config.path, config.retain_files);
}

/// Delete the oldest rotated files beyond `retain` (0 keeps all).
fn prune(path: &Path, retain: usize) {
    if retain == 0 {
        return;
    }
    let rotated = rotated_files(path);
    let excess = rotated.len().saturating_sub(retain);
    for old in &rotated[..excess] {
        match std::fs::remove_file(old) {
            Ok(()) => tracing::info!(file = %old.display(), "audit log retention: deleted"),
            Err(e) => {
                tracing::warn!(file = %old.display(), error = %e, "audit log retention: cannot delete")
            }
        }
    }
}

fn stem_and_ext(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    (stem, ext)
}

/// `<stem>.<YYYYMMDDTHHMMSS.ffffff>Z.<ext>` beside `path`: names sort in rotation order.
fn rotated_name(path: &Path) -> PathBuf {
    let (stem, ext) = stem_and_ext(path);
    let format = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:6]Z"
    );
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    let mut candidate = path.with_file_name(format!("{stem}.{stamp}.{ext}"));
    let mut n = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!("{stem}.{stamp}-{n}.{ext}"));
        n += 1;
    }
    candidate
}

/// The rotated files of the log at `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (stem, ext) = stem_and_ext(path);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!("{stem}.");
    let suffix = format!(".{ext}");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let middle = name.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
            let rotated = middle.len() >= 16 && middle.as_bytes()[8] == b'T';
            rotated.then(|| e.path())
        })
        .collect();
    found.sort();
    found
}

/// Every file of the log at `path` in write order: the rotated ones, then the active one
/// (when it exists).
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut all = rotated_files(path);
    if path.exists() {
        all.push(path.to_path_buf());
    }
    all
}

/// Cut a torn last line (one without its newline) from the file at `path`, if any.
pub fn repair_tail(path: &Path) -> std::io::Result<Option<TornTail>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(chunk.len());
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            let whole = start + i as u64 + 1;
            return cut(&file, whole, len);
        }
        end = start;
    }
    cut(&file, 0, len)
}

fn cut(file: &File, whole: u64, len: u64) -> std::io::Result<Option<TornTail>> {
    if whole == len {
        return Ok(None);
    }
    file.set_len(whole)?;
    file.sync_all()?;
    Ok(Some(TornTail {
        offset: whole,
        bytes: len - whole,
    }))
}
