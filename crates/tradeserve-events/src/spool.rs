//! A durable on-disk spool: where decision events wait while the broker cannot take them.
//!
//! Layout: a folder of append-only segments `spool-<seq>.log` (20-digit sequence numbers, so
//! names sort in order) and a `checkpoint` file naming the first record not yet delivered.
//! Each record is `[u32 LE length][u32 LE CRC-32 of the payload][payload]`, the payload being
//! `[u16 LE key length][key][value]`. Readers get records in exactly the order they were
//! appended, across segments and process restarts.
//!
//! Durability: `append` writes through a buffer; [`Spool::sync`] flushes and `fsync`s the
//! segment, and the owner decides when (the Kafka sink syncs after every batch it spools and
//! before acknowledging shutdown). A segment is rotated after `segment_bytes`; fully delivered
//! segments are deleted when the checkpoint moves past them; the checkpoint is replaced
//! atomically (write, fsync, rename).
//!
//! Recovery: on open, the newest segment is scanned and a torn tail (a short or corrupt last
//! record: the process died mid-write) is truncated away. A corrupt record *before* the tail of
//! a segment is data loss; it is never skipped silently: reading stops with
//! [`SpoolError::Corrupt`], which the owner counts and logs.
//!
//! The spool has one owner (no locking): the thread that delivers events.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where a record ends: the reading position just after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One spooled record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Position just after this record: commit it once the record is delivered.
    pub end: Position,
}

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Rotate to a new segment after this many bytes.
    pub segment_bytes: u64,
}

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("spool {path}: corrupt record at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("spool: key of {0} bytes is too long")]
    KeyTooLong(usize),
}

const HEADER: u64 = 8;
/// Refuse absurd lengths when reading (a corrupt length must not allocate gigabytes).
const MAX_RECORD: u32 = 16 * 1024 * 1024;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |cause| SpoolError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

fn segment_name(seq: u64) -> String {
    format!("spool-{seq:020}.log")
}

fn parse_segment(name: &str) -> Option<u64> {
    name.strip_prefix("spool-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// A decoded record: key, value, and the offset just after it.
type Decoded = (Vec<u8>, Vec<u8>, u64);

/// Read the record at the reader's position: `Ok(None)` at a clean end of the segment,
/// `Err((offset, reason))` at a short or corrupt record.
fn read_record(reader: &mut impl Read, offset: u64) -> Result<Option<Decoded>, (u64, String)> {
    let mut header = [0u8; HEADER as usize];
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err((offset, "short header".into())),
            Ok(n) => got += n,
            Err(e) => return Err((offset, e.to_string())),
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(2..=MAX_RECORD).contains(&len) {
        return Err((offset, format!("impossible length {len}")));
    }
    let mut payload = vec![0u8; len as usize];
    reader
        .read_exact(&mut payload)
        .map_err(|_| (offset, "short payload".to_owned()))?;
    if crc32fast::hash(&payload) != crc {
        return Err((offset, "checksum mismatch".into()));
    }
    let key_len = u16::from_le_bytes([payload[0], payload[1]]) as usize;
    if 2 + key_len > payload.len() {
        return Err((offset, "key longer than record".into()));
    }
    let value = payload.split_off(2 + key_len);
    let key = payload[2..].to_vec();
    Ok(Some((key, value, offset + HEADER + u64::from(len))))
}

/// The spool.
pub struct Spool {
    config: SpoolConfig,
    writer: BufWriter<File>,
    write_seq: u64,
    write_len: u64,
    checkpoint: Position,
    /// Records appended and not yet committed (maintained across restarts by a scan at open).
    pending: u64,
    /// Appended since the last sync.
    dirty: bool,
}

impl Spool {
    /// Open (or create) the spool in `config.dir`, recovering from a torn tail.
    pub fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(&config.dir).map_err(io(&config.dir))?;
        let checkpoint = read_checkpoint(&config.dir)?;
        let segments = list_segments(&config.dir)?;
        let write_seq = segments
            .last()
            .copied()
            .unwrap_or(checkpoint.segment)
            .max(checkpoint.segment);
        let path = config.dir.join(segment_name(write_seq));
        // Truncate a torn tail of the newest segment before appending to it.
        let valid = if path.exists() {
            scan_valid_len(&path)?
        } else {
            0
        };
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        file.set_len(valid).map_err(io(&path))?;
        let mut file = file;
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        let mut spool = Spool {
            config,
            writer: BufWriter::new(file),
            write_seq,
            write_len: valid,
            checkpoint,
            pending: 0,
            dirty: false,
        };
        spool.pending = spool.count_pending()?;
        Ok(spool)
    }

    /// Records waiting for delivery.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Append one record (buffered; call [`Spool::sync`] to make it durable).
    pub fn append(&mut self, key: &[u8], value: &[u8]) -> Result<(), SpoolError> {
        let key_len = u16::try_from(key.len()).map_err(|_| SpoolError::KeyTooLong(key.len()))?;
        if self.write_len >= self.config.segment_bytes {
            self.rotate()?;
        }
        let mut payload = Vec::with_capacity(2 + key.len() + value.len());
        payload.extend_from_slice(&key_len.to_le_bytes());
        payload.extend_from_slice(key);
        payload.extend_from_slice(value);
        let len =
            u32::try_from(payload.len()).map_err(|_| SpoolError::KeyTooLong(payload.len()))?;
        let path = self.segment_path(self.write_seq);
        self.writer
            .write_all(&len.to_le_bytes())
            .map_err(io(&path))?;
        self.writer
            .write_all(&crc32fast::hash(&payload).to_le_bytes())
            .map_err(io(&path))?;
        self.writer.write_all(&payload).map_err(io(&path))?;
        self.write_len += HEADER + u64::from(len);
        self.pending += 1;
        self.dirty = true;
        Ok(())
    }

    /// Flush and fsync the current segment (nothing to do when nothing was appended).
    /// Whether records were written since the last [`Spool::sync`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if !self.dirty {
            return Ok(());
        }
        let path = self.segment_path(self.write_seq);
        self.writer.flush().map_err(io(&path))?;
        self.writer.get_ref().sync_data().map_err(io(&path))?;
        self.dirty = false;
        Ok(())
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.config.dir.join(segment_name(seq))
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        self.write_seq += 1;
        self.write_len = 0;
        let path = self.segment_path(self.write_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.writer = BufWriter::new(file);
        sync_dir(&self.config.dir)
    }

    /// Up to `max` undelivered records, oldest first, starting at the checkpoint.
    pub fn read_batch(&mut self, max: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        // Readers see only what reached the file.
        let path = self.segment_path(self.write_seq);
        self.writer.flush().map_err(io(&path))?;
        let mut out = Vec::new();
        let mut pos = self.checkpoint;
        while out.len() < max && pos.segment <= self.write_seq {
            let path = self.segment_path(pos.segment);
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    pos = Position {
                        segment: pos.segment + 1,
                        offset: 0,
                    };
                    continue;
                }
                Err(e) => return Err(SpoolError::Io { path, cause: e }),
            };
            file.seek(SeekFrom::Start(pos.offset)).map_err(io(&path))?;
            let mut reader = std::io::BufReader::new(file);
            let mut offset = pos.offset;
            loop {
                if out.len() >= max {
                    return Ok(out);
                }
                match read_record(&mut reader, offset) {
                    Ok(Some((key, value, end))) => {
                        offset = end;
                        out.push(SpoolRecord {
                            key,
                            value,
                            end: Position {
                                segment: pos.segment,
                                offset: end,
                            },
                        });
                    }
                    Ok(None) => break,
                    Err((at, reason)) => {
                        return Err(SpoolError::Corrupt {
                            path,
                            offset: at,
                            reason,
                        });
                    }
                }
            }
            if pos.segment == self.write_seq {
                break;
            }
            pos = Position {
                segment: pos.segment + 1,
                offset: 0,
            };
        }
        Ok(out)
    }

    /// Everything up to `end` is delivered: move the checkpoint and delete finished segments.
    pub fn commit(&mut self, end: Position, records: u64) -> Result<(), SpoolError> {
        if end <= self.checkpoint {
            return Ok(());
        }
        write_checkpoint(&self.config.dir, end)?;
        for seq in list_segments(&self.config.dir)? {
            if seq < end.segment {
                let path = self.segment_path(seq);
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        self.checkpoint = end;
        self.pending = self.pending.saturating_sub(records);
        Ok(())
    }

    fn count_pending(&mut self) -> Result<u64, SpoolError> {
        let mut n = 0u64;
        let saved = self.checkpoint;
        loop {
            let batch = self.read_batch(4096)?;
            if batch.is_empty() {
                break;
            }
            n += batch.len() as u64;
            // Walk forward without committing.
            if let Some(last) = batch.last() {
                self.checkpoint = last.end;
            }
        }
        self.checkpoint = saved;
        Ok(n)
    }
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(parse_segment))
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Length of the longest valid prefix of a segment.
fn scan_valid_len(path: &Path) -> Result<u64, SpoolError> {
    let file = File::open(path).map_err(io(path))?;
    let mut reader = std::io::BufReader::new(file);
    let mut offset = 0;
    loop {
        match read_record(&mut reader, offset) {
            Ok(Some((_, _, end))) => offset = end,
            Ok(None) => return Ok(offset),
            Err((at, reason)) => {
                tracing::warn!(path = %path.display(), offset = at, %reason, "spool: truncating a torn tail");
                return Ok(at);
            }
        }
    }
}

fn read_checkpoint(dir: &Path) -> Result<Position, SpoolError> {
    let path = dir.join("checkpoint");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut parts = text.split_whitespace().map(str::parse::<u64>);
            match (parts.next(), parts.next()) {
                (Some(Ok(segment)), Some(Ok(offset))) => Ok(Position { segment, offset }),
                _ => Err(SpoolError::Corrupt {
                    path,
                    offset: 0,
                    reason: "unreadable checkpoint".into(),
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Position::default()),
        Err(e) => Err(SpoolError::Io { path, cause: e }),
    }
}

fn write_checkpoint(dir: &Path, pos: Position) -> Result<(), SpoolError> {
    let tmp = dir.join("checkpoint.tmp");
    let path = dir.join("checkpoint");
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        writeln!(f, "{} {}", pos.segment, pos.offset).map_err(io(&tmp))?;
        f.sync_data().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, segment_bytes: u64) -> Spool {
        Spool::open(SpoolConfig {
            dir: dir.to_path_buf(),
            segment_bytes,
        })
        .unwrap()
    }

    fn values(records: &[SpoolRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.value.clone()).unwrap())
            .collect()
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 100);
        for i in 0..50 {
            s.append(b"AAPL", format!("event-{i}").as_bytes()).unwrap();
        }
        s.sync().unwrap();
        assert_eq!(s.pending(), 50);
        assert!(
            list_segments(dir.path()).unwrap().len() > 5,
            "small segments rotate"
        );
        drop(s);
        let mut s = open(dir.path(), 100);
        assert_eq!(s.pending(), 50);
        let batch = s.read_batch(1000).unwrap();
        assert_eq!(
            values(&batch),
            (0..50).map(|i| format!("event-{i}")).collect::<Vec<_>>()
        );
        assert!(batch.iter().all(|r| r.key == b"AAPL"));
    }

    #[test]
    fn commit_moves_the_checkpoint_and_deletes_delivered_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 64);
        for i in 0..20 {
            s.append(b"K", format!("v{i}").as_bytes()).unwrap();
        }
        let first = s.read_batch(12).unwrap();
        assert_eq!(first.len(), 12);
        let segments_before = list_segments(dir.path()).unwrap().len();
        s.commit(first[11].end, 12).unwrap();
        assert_eq!(s.pending(), 8);
        assert!(list_segments(dir.path()).unwrap().len() < segments_before);
        drop(s);
        // After a restart delivery resumes exactly after the committed record.
        let mut s = open(dir.path(), 64);
        assert_eq!(s.pending(), 8);
        assert_eq!(
            values(&s.read_batch(100).unwrap()),
            (12..20).map(|i| format!("v{i}")).collect::<Vec<_>>()
        );
        // Appending after a restart continues the order.
        s.append(b"K", b"v20").unwrap();
        let all = s.read_batch(100).unwrap();
        assert_eq!(all.len(), 9);
        s.commit(all[8].end, 9).unwrap();
        assert!(s.is_empty());
        assert!(s.read_batch(10).unwrap().is_empty());
    }

    #[test]
    fn a_torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..3 {
            s.append(b"K", format!("v{i}").as_bytes()).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        // The process died in the middle of writing a fourth record.
        let path = dir.path().join(segment_name(0));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.pending(), 3);
        s.append(b"K", b"v3").unwrap();
        assert_eq!(
            values(&s.read_batch(10).unwrap()),
            vec!["v0", "v1", "v2", "v3"]
        );
    }

    #[test]
    fn corruption_before_the_tail_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..3 {
            s.append(b"K", format!("value-{i}").as_bytes()).unwrap();
        }
        s.sync().unwrap();
        // Flip a byte inside the first record's payload, in a segment that is not the newest.
        s.rotate().unwrap();
        s.append(b"K", b"later").unwrap();
        s.sync().unwrap();
        drop(s);
        let path = dir.path().join(segment_name(0));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = Spool::open(SpoolConfig {
            dir: dir.path().to_path_buf(),
            segment_bytes: 1 << 20,
        })
        .err();
        assert!(
            matches!(err, Some(SpoolError::Corrupt { offset: 0, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn keys_over_64k_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        assert!(matches!(
            s.append(&vec![b'k'; 70_000], b"v"),
            Err(SpoolError::KeyTooLong(70_000))
        ));
        assert!(s.is_empty());
    }
}
