//! The Kafka sink's write-ahead log: what makes a Kafka-bound decision event survive a crash
//! of the process between the answer and the broker's acknowledgement.
//!
//! The log is an [`AuditLog`] file (same append, group-commit fsync, failure handling and torn
//! tail repair) that every event is appended to before its decision is answered. The delivery
//! thread marks each line done once the broker acknowledged it or it is in the durable spool,
//! and keeps a checkpoint: the offset below which every line is done. When the checkpoint
//! passes `segment_bytes`, the file is retired (renamed `.old`, under the writer lock, with the
//! checkpoint of both written in the same critical section) and deleted once all of it is
//! done. At start, the lines past the checkpoints are moved into the spool, which delivers
//! them first: at least once, deduplicated downstream on `decision_id`.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audit_log::{AuditLog, LineAt, repair_tail};
use crate::spool::Spool;

/// Settings of the write-ahead log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub path: PathBuf,
    pub fsync_interval: Duration,
    /// Once the checkpoint passes this many bytes, the file is retired (renamed to its
    /// `.old` name) and a new one begun; the old one is deleted when all of it is done.
    pub segment_bytes: u64,
}

impl WalConfig {
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.with_extension("checkpoint")
    }

    pub fn old_path(&self) -> PathBuf {
        self.path.with_extension("old")
    }
}

/// Done offsets of the active file and of the retired one still being delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    active: u64,
    old: Option<u64>,
}

fn read_checkpoint(path: &Path) -> Checkpoint {
    std::fs::read(path)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

fn write_checkpoint(path: &Path, c: Checkpoint) -> std::io::Result<()> {
    let tmp = path.with_extension("checkpoint.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&c).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// The record key of an event line (its `symbol`, else its `subject_id`).
fn key_of(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Keys {
        symbol: Option<String>,
        subject_id: Option<String>,
    }
    let k: Keys = serde_json::from_slice(line).ok()?;
    k.symbol.or(k.subject_id)
}

/// Spool the lines of `path` from byte `from`; how many.
fn spool_from(path: &Path, from: u64, spool: &mut Spool) -> std::io::Result<u64> {
    if let Some(torn) = repair_tail(path)? {
        tracing::warn!(path = %path.display(), offset = torn.offset, bytes = torn.bytes, "kafka write-ahead log ended in a torn line; cut it");
    }
    let mut text = Vec::new();
    match std::fs::File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut text)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    }
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
    let mut moved = 0u64;
    for line in text[from..]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        match key_of(line) {
            Some(key) => {
                spool
                    .append(key.as_bytes(), line)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                moved += 1;
            }
            None => tracing::error!(
                line = %String::from_utf8_lossy(line),
                "kafka write-ahead log: unreadable line skipped"
            ),
        }
    }
    Ok(moved)
}

/// Move the lines a crashed process left undelivered (past the checkpoints) into the spool,
/// fsync it, then start the log afresh. Returns how many lines were moved.
pub fn recover(config: &WalConfig, spool: &mut Spool) -> std::io::Result<u64> {
    let c = read_checkpoint(&config.checkpoint_path());
    let old = config.old_path();
    let mut moved = spool_from(&old, c.old.unwrap_or(0), spool)?;
    moved += spool_from(&config.path, c.active, spool)?;
    spool
        .sync()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    match std::fs::remove_file(&old) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if config.path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&config.path)?
            .set_len(0)?;
    }
    write_checkpoint(&config.checkpoint_path(), Checkpoint::default())?;
    if moved > 0 {
        tracing::warn!(
            events = moved,
            "kafka write-ahead log: events not confirmed delivered before the last stop were moved to the spool (delivered again; consumers dedupe on decision_id)"
        );
    }
    Ok(moved)
}

/// One file's done lines: every byte below `low` is done; `done` holds the ranges above.
#[derive(Debug, Default)]
struct Segment {
    generation: u64,
    low: u64,
    done: BTreeMap<u64, u64>,
    /// Its length once retired.
    len: Option<u64>,
}

impl Segment {
    fn mark(&mut self, range: Range<u64>) {
        self.done.insert(range.start, range.end);
        while let Some(end) = self.done.remove(&self.low) {
            self.low = end;
        }
    }

    fn finished(&self) -> bool {
        self.len == Some(self.low)
    }
}

/// The delivery thread's view of the log: which lines are done, and the checkpoint.
pub struct Progress {
    log: Arc<AuditLog>,
    config: WalConfig,
    active: Segment,
    old: Option<Segment>,
    written: Checkpoint,
    last_write: Instant,
}

impl Progress {
    pub fn new(log: Arc<AuditLog>, config: WalConfig) -> Progress {
        Progress {
            log,
            config,
            active: Segment::default(),
            old: None,
            written: Checkpoint::default(),
            last_write: Instant::now(),
        }
    }

    /// The line `at` is delivered or durably spooled.
    pub fn done(&mut self, at: LineAt) {
        if at.generation == self.active.generation {
            self.active.mark(at.range);
        } else if let Some(old) = self.old.as_mut().filter(|o| o.generation == at.generation) {
            old.mark(at.range);
        }
    }

    fn current(&self) -> Checkpoint {
        Checkpoint {
            active: self.active.low,
            old: self.old.as_ref().map(|o| o.low),
        }
    }

    fn save(&mut self, c: Checkpoint) {
        match write_checkpoint(&self.config.checkpoint_path(), c) {
            Ok(()) => self.written = c,
            Err(e) => {
                tracing::warn!(error = %e, "kafka write-ahead log: cannot write the checkpoint")
            }
        }
        self.last_write = Instant::now();
    }

    /// Persist the checkpoint when it moved (at most every 100 ms unless `now`); delete the
    /// retired file once all of it is done; retire the active file once it is large.
    /// Whether every delivery marked done is in the saved checkpoint (nothing left to write).
    pub fn is_saved(&self) -> bool {
        self.current() == self.written
    }

    pub fn checkpoint(&mut self, now: bool) {
        if self.old.as_ref().is_some_and(Segment::finished) {
            if let Err(e) = std::fs::remove_file(self.config.old_path()) {
                tracing::warn!(error = %e, "kafka write-ahead log: cannot delete the retired file");
            }
            self.old = None;
            let c = self.current();
            self.save(c);
        }
        let c = self.current();
        if c != self.written && (now || self.last_write.elapsed() >= Duration::from_millis(100)) {
            self.save(c);
        }
        if self.old.is_none() && self.active.low >= self.config.segment_bytes {
            self.retire();
        }
    }

    /// Continue in a new file; the current one becomes the retired one. The checkpoint of
    /// both is written under the log's writer lock, so no line lands in between.
    fn retire(&mut self) {
        let checkpoint = self.config.checkpoint_path();
        let low = self.active.low;
        let mut retired = None;
        let result = self.log.retire_to(&self.config.old_path(), |generation, len| {
            retired = Some((generation, len));
            let c = Checkpoint {
                active: 0,
                old: Some(low),
            };
            if let Err(e) = write_checkpoint(&checkpoint, c) {
                tracing::warn!(error = %e, "kafka write-ahead log: cannot write the checkpoint");
            }
        });
        match (result, retired) {
            (Ok(()), Some((generation, len))) => {
                let mut old = std::mem::take(&mut self.active);
                old.len = Some(len);
                debug_assert_eq!(old.generation, generation);
                self.active.generation = generation + 1;
                self.written = self.current_with(&old);
                self.old = Some(old);
            }
            (Err(e), _) => {
                tracing::warn!(error = %e, "kafka write-ahead log: cannot retire the file")
            }
            _ => {}
        }
    }

    fn current_with(&self, old: &Segment) -> Checkpoint {
        Checkpoint {
            active: self.active.low,
            old: Some(old.low),
        }
    }
}
