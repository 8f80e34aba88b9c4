//! The audit log's hash chain: every line carries `"prev_hash"`, the hash of the line before
//! it (`sha256:<hex>`, or `hmac-sha256:<hex>` when a key is configured), the previous file's
//! last line for the first line of a rotated file, and 64 zeros for the first line ever. An
//! edit, a deletion, an insertion or a reordering breaks a link at the line after it, which
//! [`verify`] reports with the file and line. Without a key the chain shows tampering by
//! anyone who does not recompute it; with a key (kept away from the log's host), only a key
//! holder could.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The field every chained line ends with.
pub const FIELD: &str = "prev_hash";

/// How links are made: plain SHA-256, or HMAC-SHA256 with a secret key.
#[derive(Clone, PartialEq, Eq)]
pub enum ChainKey {
    Sha256,
    Hmac(Vec<u8>),
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm())
    }
}

impl ChainKey {
    pub fn algorithm(&self) -> &'static str {
        match self {
            ChainKey::Sha256 => "sha256",
            ChainKey::Hmac(_) => "hmac-sha256",
        }
    }

    /// The link to `line` (its bytes without the newline).
    pub fn hash(&self, line: &[u8]) -> [u8; 32] {
        match self {
            ChainKey::Sha256 => Sha256::digest(line).into(),
            ChainKey::Hmac(key) => match <Hmac<Sha256> as Mac>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(line);
                    mac.finalize().into_bytes().into()
                }
                // HMAC takes keys of any length; this arm is never taken.
                Err(_) => Sha256::digest(line).into(),
            },
        }
    }
}

/// The chain's state while appending: the hash of the last line written.
#[derive(Debug, Clone)]
pub struct Chain {
    key: ChainKey,
    head: [u8; 32],
}

impl Chain {
    /// Continue after the last line of a log whose `files` (oldest first) are given: its
    /// newest non-empty file's; from the genesis link when it has none.
    pub fn resume(key: ChainKey, files: &[PathBuf]) -> std::io::Result<Chain> {
        let mut head = [0u8; 32];
        for file in files.iter().rev() {
            if let Some(line) = last_line(file)? {
                head = key.hash(&line);
                break;
            }
        }
        Ok(Chain { key, head })
    }

    /// `line` (a JSON object, no newline) with its `prev_hash` added, newline included, and
    /// the head the chain moves to once it is written.
    pub fn seal(&self, line: &[u8]) -> (Vec<u8>, [u8; 32]) {
        let mut head = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the hash's length.
        let _ = hex::encode_to_slice(self.head, &mut head);
        let algorithm = self.key.algorithm();
        let body = line.strip_suffix(b"}").unwrap_or(line);
        let mut out = Vec::with_capacity(body.len() + FIELD.len() + algorithm.len() + 72);
        out.extend_from_slice(body);
        if body.iter().rev().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            out.push(b',');
        }
        for part in [
            b"\"",
            FIELD.as_bytes(),
            b"\":\"",
            algorithm.as_bytes(),
            b":",
        ] {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&head);
        out.extend_from_slice(b"\"}\n");
        let head = self.key.hash(&out[..out.len() - 1]);
        (out, head)
    }

    /// The hash of the last line, as a `prev_hash` names it.
    pub fn head(&self) -> String {
        format!("{}:{}", self.key.algorithm(), hex::encode(self.head))
    }

    /// The line was written: it is the new head.
    pub fn advance(&mut self, head: [u8; 32]) {
        self.head = head;
    }
}

/// The last whole line of `path` (without its newline), if it has one.
fn last_line(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // Lines are a few KB; read back far enough to hold the last one whole.
    let mut back = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(back);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
            return Ok(None);
        };
        let body = &tail[..end];
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok(Some(body[i + 1..].to_vec())),
            None if start == 0 => return Ok(Some(body.to_vec())),
            None => back *= 4,
        }
    }
}

/// One thing [`verify`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line number in `file`.
    pub line: u64,
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// `prev_hash` names no line in the log: the line before was edited or deleted, or this
    /// one was inserted, moved or edited.
    BrokenLink,
    /// `prev_hash` names an earlier line, not the one before: lines were inserted or moved
    /// in between.
    Skipped,
    /// A line without `prev_hash` after the chain began.
    Unchained,
    /// Not a JSON object.
    NotJson,
    /// The last line has no newline: a crash during a write (cut at the next start).
    TornTail,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub files: Vec<PathBuf>,
    pub lines: u64,
    /// Lines before the chain began (written before it existed).
    pub unchained_before: u64,
    /// Where the chain begins: `genesis`, or the line (file:line) whose predecessor is not in
    /// the log any more (rotated out by retention, or removed).
    pub begins: String,
    /// The hash of the last line: compare with a copy kept elsewhere to see a cut-off end.
    pub head: String,
    pub problems: Vec<Problem>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check every link of `files` (a log's files, oldest first: [`crate::audit_log::files`])
/// with `key`.
pub fn verify(files: &[PathBuf], key: &ChainKey) -> std::io::Result<Verified> {
    let mut walk = Walk {
        key,
        files,
        out: Verified {
            files: files.to_vec(),
            lines: 0,
            unchained_before: 0,
            begins: String::new(),
            head: String::new(),
            problems: Vec::new(),
        },
        seen: HashMap::new(),
        head: None,
        started: false,
    };
    for (fi, file) in files.iter().enumerate() {
        let mut reader = BufReader::new(std::fs::File::open(file)?);
        let mut raw = Vec::new();
        for n in 1.. {
            raw.clear();
            if reader.read_until(b'\n', &mut raw)? == 0 {
                break;
            }
            if !walk.line(fi, n, &raw) {
                break;
            }
        }
    }
    let head = walk.head;
    let mut out = walk.out;
    out.head = head.map_or_else(String::new, |h| {
        format!("{}:{}", key.algorithm(), hex::encode(h))
    });
    Ok(out)
}

/// [`verify`]'s state between lines.
struct Walk<'a> {
    key: &'a ChainKey,
    files: &'a [PathBuf],
    out: Verified,
    /// Where each line was, by its hash.
    seen: HashMap<[u8; 32], (usize, u64)>,
    /// The hash of the line before.
    head: Option<[u8; 32]>,
    /// A chained line was seen.
    started: bool,
}

impl Walk<'_> {
    fn problem(&mut self, fi: usize, line: u64, kind: ProblemKind, message: String) {
        self.out.problems.push(Problem {
            file: self.files[fi].clone(),
            line,
            kind,
            message,
        });
    }

    /// Check line `n` of file `fi` (`raw` with its newline, if it has one); false: stop
    /// reading this file.
    fn line(&mut self, fi: usize, n: u64, raw: &[u8]) -> bool {
        let Some(line) = raw.strip_suffix(b"\n") else {
            let message = if fi + 1 == self.files.len() {
                "the last line has no newline: a write cut short by a crash (the service cuts it at its next start)"
            } else {
                "a rotated file ends without a newline"
            };
            self.problem(fi, n, ProblemKind::TornTail, message.to_owned());
            return false;
        };
        self.out.lines += 1;
        let hash = self.key.hash(line);
        match link_of(line) {
            Err(why) => self.problem(fi, n, ProblemKind::NotJson, why),
            Ok(None) if !self.started => self.out.unchained_before += 1,
            Ok(None) => self.problem(
                fi,
                n,
                ProblemKind::Unchained,
                format!("no {FIELD}: inserted or edited after the chain began"),
            ),
            Ok(Some((alg, _))) if alg != self.key.algorithm() => {
                self.started = true;
                let message = format!(
                    "{FIELD} is {alg}, this check uses {}: verify with the key the service used",
                    self.key.algorithm()
                );
                self.problem(fi, n, ProblemKind::BrokenLink, message);
            }
            Ok(Some((_, prev))) if !self.started => {
                self.started = true;
                self.out.begins = self.begins(fi, n, prev);
            }
            Ok(Some((_, prev))) if Some(prev) != self.head => {
                let (kind, message) = match self.seen.get(&prev) {
                    Some((f, at)) => (
                        ProblemKind::Skipped,
                        format!(
                            "follows {}:{at}, not the line before it: the lines between were inserted or moved there",
                            self.files[*f].display()
                        ),
                    ),
                    None => (
                        ProblemKind::BrokenLink,
                        "its prev_hash matches no line before it: the line before was edited or deleted, or this line was inserted, moved or edited".to_owned(),
                    ),
                };
                self.problem(fi, n, kind, message);
            }
            Ok(Some(_)) => {}
        }
        self.seen.insert(hash, (fi, n));
        self.head = Some(hash);
        true
    }

    /// Where the chain begins, told by its first link.
    fn begins(&self, fi: usize, n: u64, prev: [u8; 32]) -> String {
        let file = self.files[fi].display();
        if prev == [0; 32] && self.head.is_none() {
            "genesis".into()
        } else if Some(prev) == self.head {
            format!(
                "{file}:{n} (after {} unchained lines)",
                self.out.unchained_before
            )
        } else {
            format!("{file}:{n}, whose predecessor is not in the log (rotated out, or removed)")
        }
    }
}

/// A line's `prev_hash` (algorithm, hash), `None` when it has none.
pub fn link_of(line: &[u8]) -> Result<Option<(String, [u8; 32])>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let Some(field) = obj.get(FIELD) else {
        return Ok(None);
    };
    let text = field.as_str().ok_or(format!("{FIELD} is not a string"))?;
    let (alg, hex_hash) = text
        .split_once(':')
        .ok_or(format!("{FIELD} is not <algorithm>:<hex>"))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut hash)
        .map_err(|_| format!("{FIELD} is not 64 hex digits"))?;
    Ok(Some((alg.to_owned(), hash)))
}
