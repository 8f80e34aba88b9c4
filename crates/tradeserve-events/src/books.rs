//! This replica's risk books and the record they are rebuilt from: positions and daily order
//! counts survive restarts, rotation and retention, and are never read as flat when their
//! history is missing (a crash loop or a retention cycle must not reopen a limit).
//!
//! - **Checkpoint.** Beside the audit log, `<stem>.books.json`: the books as of the last line
//!   of the newest rotated file, naming that file, its line count and its chain hash. Written
//!   atomically (temporary file, fsync, rename, directory fsync) whenever files are rotated,
//!   before retention may delete any (the audit log's retire hook, [`checkpoint_rotated`]): a
//!   file is deleted only once a checkpoint carries it.
//! - **Start** ([`replay`]): the checkpoint, then every line after it — the rotated files it
//!   does not cover, then the active file. Without a checkpoint, the whole log, which must
//!   begin at the chain's genesis (an unchained log must never have been rotated).
//! - **Missing history** ([`Missing`]): files pruned past the checkpoint, files that do not
//!   continue it (their first line's `prev_hash` is not the checkpoint's last hash), an
//!   unreadable checkpoint, or a log that begins mid-chain without one. The service then starts
//!   not ready and refuses every risk-checked order (503 `risk_unavailable`) until an operator
//!   reconciles: `tradeserve risk show` prints what a start would load, `tradeserve risk
//!   reconcile` records a baseline (flat, or positions from a file) for the books as of the
//!   first retained line, with who and why.
//!
//! Only approved, risk-checked decisions change a book (a line's `risk_checks` is null when the
//! request asked for no check), each on its own UTC day.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::audit_log::files;
use crate::chain::{ChainKey, link_of};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tradeserve_core::ledger::{DeskDay, InMemoryRiskLedger, count_in_window};
use tradeserve_core::risk::{Order, SymbolBook};
use tradeserve_core::types::Action;

/// The checkpoint's format name.
pub const FORMAT: &str = "tradeserve.books/1";

time::serde::format_description!(day_format, Date, "[year]-[month]-[day]");

/// Why the books cannot be known: the service refuses risk-checked orders until an operator
/// reconciles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("risk books history missing: {0}; reconcile with `tradeserve risk reconcile`")]
pub struct Missing(pub String);

/// One symbol's book as the checkpoint writes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub position: i64,
    /// The UTC day `orders_today` counts (`YYYY-MM-DD`).
    #[serde(
        default,
        with = "day_format::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub day: Option<time::Date>,
    #[serde(default)]
    pub orders_today: u64,
}

impl From<SymbolBook> for Book {
    fn from(b: SymbolBook) -> Book {
        Book {
            position: b.position,
            day: b.day,
            orders_today: b.orders_today,
        }
    }
}

impl From<Book> for SymbolBook {
    fn from(b: Book) -> SymbolBook {
        SymbolBook {
            position: b.position,
            day: b.day,
            orders_today: b.orders_today,
        }
    }
}

/// The last line a checkpoint carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covers {
    /// The rotated file it ends with (its name); empty for a baseline before every retained
    /// file.
    pub file: String,
    /// Lines of that file.
    pub lines: u64,
    /// The chain hash of that file's last line (`<algorithm>:<hex>`): the next line's
    /// `prev_hash`. `None` for an unchained log.
    pub last_hash: Option<String>,
}

/// A baseline an operator recorded for missing history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub by: String,
    pub reason: String,
}

/// `<stem>.books.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub covers: Covers,
    #[serde(with = "time::serde::rfc3339")]
    pub written_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled: Option<Reconciled>,
    pub books: BTreeMap<String, Book>,
    /// Each desk's (API key's) gross notional on its last UTC day, for `desk_daily_notional`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub desks: BTreeMap<String, Desk>,
    /// Each symbol's approved orders in the repeated-execution latch's last window, so a
    /// restart within a window does not start its count over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latch: Option<Latch>,
}

/// Approved orders per symbol in the latch's windows of `window_ms` (windows aligned to the
/// UTC clock, as the ledger counts them).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Latch {
    pub window_ms: i64,
    /// `symbol → [window index, approved orders in it]` (written as a two-element array).
    pub symbols: BTreeMap<String, (i64, u64)>,
}

impl Latch {
    fn new(window: Duration) -> Latch {
        Latch {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1),
            symbols: BTreeMap::new(),
        }
    }

    /// Count an order of `symbol` at `at_ms` (a count never goes back: an order of an
    /// earlier window counts in the later one, as in the ledger).
    fn count(&mut self, symbol: &str, at_ms: i64) {
        let window = at_ms.div_euclid(self.window_ms);
        let c = self.symbols.entry(symbol.to_owned()).or_insert((window, 0));
        count_in_window(c, window);
    }
}

/// A desk's gross notional on one UTC day, as the checkpoint writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desk {
    #[serde(with = "day_format")]
    pub day: time::Date,
    pub notional_cents: u64,
}

impl From<DeskDay> for Desk {
    fn from(d: DeskDay) -> Desk {
        Desk {
            day: d.day,
            notional_cents: d.notional_cents,
        }
    }
}

impl From<Desk> for DeskDay {
    fn from(d: Desk) -> DeskDay {
        DeskDay {
            day: d.day,
            notional_cents: d.notional_cents,
        }
    }
}

/// What a replay read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Replayed {
    /// The checkpoint it started from (`None`: the log's first line).
    pub checkpoint: Option<Covers>,
    pub files: usize,
    pub lines: u64,
    /// Orders applied to the books after the checkpoint.
    pub orders: u64,
    /// Lines that were not a readable event (reported, never fatal).
    pub unreadable: u64,
    /// The books at the end.
    pub books: BTreeMap<String, Book>,
    /// Each desk's notional day at the end.
    pub desks: BTreeMap<String, Desk>,
    /// The latch's counts at the end, when a window was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latch: Option<Latch>,
    /// The last file read and its last line (what a checkpoint of these books covers).
    #[serde(skip)]
    last: Option<Covers>,
}

/// The checkpoint of the log at `log`: `<stem>.books.json` beside it.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    let stem = log.file_stem().map(|s| s.to_string_lossy().into_owned());
    log.with_file_name(format!("{}.books.json", stem.as_deref().unwrap_or("audit")))
}

/// The checkpoint, if there is one.
pub fn read_checkpoint(log: &Path) -> Result<Option<Checkpoint>, Missing> {
    let path = checkpoint_path(log);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Missing(format!("cannot read {}: {e}", path.display()))),
    };
    let cp: Checkpoint = serde_json::from_slice(&bytes)
        .map_err(|e| Missing(format!("{} is not a books checkpoint: {e}", path.display())))?;
    if cp.format != FORMAT {
        return Err(Missing(format!(
            "{} has format {:?}, expected {FORMAT:?}",
            path.display(),
            cp.format
        )));
    }
    Ok(Some(cp))
}

/// Write `cp` so that a crash leaves the old checkpoint or the new one, never a mix.
pub fn write_checkpoint(log: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    let path = checkpoint_path(log);
    let tmp = path.with_extension("json.tmp");
    let mut bytes = serde_json::to_vec_pretty(cp).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Only the fields a risk book needs (absent from control and shadow events).
#[derive(Deserialize)]
struct Line {
    event_type: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    timestamp: Option<OffsetDateTime>,
    #[serde(default)]
    symbol: String,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    quantity: u64,
    #[serde(default)]
    price: f64,
    #[serde(default)]
    approved: bool,
    /// `null` when the request asked for no risk check (the books were not touched).
    #[serde(default)]
    risk_checks: Option<serde::de::IgnoredAny>,
    /// The desk (API key id); absent: an unauthenticated caller (`-`).
    #[serde(default)]
    actor: Option<String>,
}

/// What a replay builds: every symbol's book and every desk's notional day.
#[derive(Debug, Default)]
struct State {
    books: BTreeMap<String, SymbolBook>,
    desks: BTreeMap<String, DeskDay>,
    latch: Option<Latch>,
}

impl From<&Checkpoint> for State {
    fn from(cp: &Checkpoint) -> State {
        State {
            books: cp
                .books
                .iter()
                .map(|(k, b)| (k.clone(), (*b).into()))
                .collect(),
            desks: cp
                .desks
                .iter()
                .map(|(k, d)| (k.clone(), (*d).into()))
                .collect(),
            latch: None,
        }
    }
}

impl State {
    /// Start from `checkpoint` (or nothing), counting the latch in windows of `window`; the
    /// checkpoint's counts are kept only when they are of the same window.
    fn start(checkpoint: Option<&Checkpoint>, window: Option<Duration>) -> State {
        let mut state = checkpoint.map(State::from).unwrap_or_default();
        state.latch = window.map(|w| {
            let fresh = Latch::new(w);
            match checkpoint.and_then(|cp| cp.latch.clone()) {
                Some(kept) if kept.window_ms == fresh.window_ms => kept,
                _ => fresh,
            }
        });
        state
    }
}

/// Apply one audit line to the books and the desk's notional; whether it was an order.
fn apply_line(state: &mut State, line: &[u8]) -> Result<bool, ()> {
    let e = serde_json::from_slice::<Line>(line).map_err(drop)?;
    let (Some(at), Some(action)) = (e.timestamp, e.action) else {
        return Ok(false);
    };
    if e.event_type != "trading_decision" || !e.approved || e.risk_checks.is_none() {
        return Ok(false);
    }
    let order = Order {
        symbol: &e.symbol,
        action,
        quantity: e.quantity,
        price: e.price,
        day: at.date(),
        halt: None,
        desk: e.actor.as_deref().unwrap_or("-"),
        desk_limits: Default::default(),
        at_ms: i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
    };
    state
        .books
        .entry(e.symbol.clone())
        .or_default()
        .apply(&order);
    if !order.is_inert() {
        let desk = state.desks.entry(order.desk.to_owned()).or_insert(DeskDay {
            day: order.day,
            notional_cents: 0,
        });
        if desk.day != order.day {
            *desk = DeskDay {
                day: order.day,
                notional_cents: 0,
            };
        }
        desk.notional_cents = desk.notional_cents.saturating_add(order.notional_cents());
        if let Some(latch) = &mut state.latch {
            latch.count(&e.symbol, order.at_ms);
        }
    }
    Ok(true)
}

/// What reading one file found.
struct FileRead {
    lines: u64,
    orders: u64,
    unreadable: u64,
    /// The first line's `prev_hash`, when it has one.
    first_link: Option<[u8; 32]>,
    /// The chain hash of the last line.
    last_hash: Option<[u8; 32]>,
}

fn read_file(state: &mut State, file: &Path, key: Option<&ChainKey>) -> std::io::Result<FileRead> {
    let mut r = FileRead {
        lines: 0,
        orders: 0,
        unreadable: 0,
        first_link: None,
        last_hash: None,
    };
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    // Only the last line's hash is needed: keep the line, hash it once at the end (hashing
    // every line cost a SHA-256 pass over the whole file at each start and rotation).
    let mut last: Option<Vec<u8>> = None;
    for line in reader.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        if r.lines == 0 {
            r.first_link = link_of(&line).ok().flatten().map(|(_, h)| h);
        }
        r.lines += 1;
        match apply_line(state, &line) {
            Ok(true) => r.orders += 1,
            Ok(false) => {}
            Err(()) => r.unreadable += 1,
        }
        last = Some(line);
    }
    r.last_hash = key.zip(last).map(|(k, line)| k.hash(&line));
    Ok(r)
}

fn hash_text(key: &ChainKey, hash: &[u8; 32]) -> String {
    format!("{}:{}", key.algorithm(), hex::encode(hash))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The books as the log at `log` holds them: the checkpoint, then every line after it (the
/// active file too when `active`), checked for continuity. `key` is the log's chain key
/// (`None`: unchained).
pub fn replay(log: &Path, key: Option<&ChainKey>, active: bool) -> Result<Replayed, Missing> {
    replay_from(log, key, read_checkpoint(log)?.as_ref(), active)
}

/// [`replay`], also counting each symbol's approved orders in the repeated-execution
/// latch's windows of `window` ([`Replayed::latch`]).
pub fn replay_latched(
    log: &Path,
    key: Option<&ChainKey>,
    active: bool,
    window: Duration,
) -> Result<Replayed, Missing> {
    let checkpoint = read_checkpoint(log)?;
    replay_with(log, key, checkpoint.as_ref(), active, Some(window))
}

/// [`replay`] from `checkpoint` rather than the one on disk (a preview).
pub fn replay_from(
    log: &Path,
    key: Option<&ChainKey>,
    checkpoint: Option<&Checkpoint>,
    active: bool,
) -> Result<Replayed, Missing> {
    replay_with(log, key, checkpoint, active, None)
}

fn replay_with(
    log: &Path,
    key: Option<&ChainKey>,
    checkpoint: Option<&Checkpoint>,
    active: bool,
    window: Option<Duration>,
) -> Result<Replayed, Missing> {
    let mut all = files(log);
    if !active {
        all.retain(|f| f != log);
    }
    let mut state = State::start(checkpoint, window);
    let mut first = true;
    let mut out = Replayed::default();
    if let Some(cp) = checkpoint {
        all.retain(|f| f == log || file_name(f) > cp.covers.file);
        out.checkpoint = Some(cp.covers.clone());
        out.last = Some(cp.covers.clone());
    } else if key.is_none() && all.iter().any(|f| f != log) {
        return Err(Missing(
            "the audit log was rotated and has no books checkpoint, and it is not chained: \
             nothing shows that no file was deleted"
                .into(),
        ));
    }
    for file in &all {
        let read = read_file(&mut state, file, key)
            .map_err(|e| Missing(format!("cannot read {}: {e}", file.display())))?;
        if read.lines > 0 && first {
            check_continues(key, checkpoint, file, read.first_link)?;
            first = false;
        }
        out.files += 1;
        out.lines += read.lines;
        out.orders += read.orders;
        out.unreadable += read.unreadable;
        if read.lines > 0 || file != log {
            out.last = Some(Covers {
                file: file_name(file),
                lines: read.lines,
                last_hash: match (key, read.last_hash) {
                    (Some(k), Some(h)) => Some(hash_text(k, &h)),
                    _ => out.last.as_ref().and_then(|c| c.last_hash.clone()),
                },
            });
        }
    }
    out.books = state
        .books
        .into_iter()
        .map(|(k, b)| (k, b.into()))
        .collect();
    out.desks = state
        .desks
        .into_iter()
        .map(|(k, d)| (k, d.into()))
        .collect();
    out.latch = state.latch;
    Ok(out)
}

/// The first line read must continue what came before it: the checkpoint's last line, or the
/// chain's genesis when there is no checkpoint. (Between files the chain itself links them;
/// `tradeserve audit verify` checks every link.)
fn check_continues(
    key: Option<&ChainKey>,
    checkpoint: Option<&Checkpoint>,
    file: &Path,
    first_link: Option<[u8; 32]>,
) -> Result<(), Missing> {
    let Some(key) = key else {
        return Ok(());
    };
    match checkpoint {
        Some(cp) => {
            let found = first_link.map(|h| hash_text(key, &h));
            match &cp.covers.last_hash {
                Some(want) if found.as_deref() != Some(want.as_str()) => Err(Missing(format!(
                    "{} does not continue the books checkpoint (which ends with line {} of \
                     {:?}): lines between them were deleted, or the checkpoint belongs to \
                     another log",
                    file.display(),
                    cp.covers.lines,
                    cp.covers.file
                ))),
                _ => Ok(()),
            }
        }
        None if first_link != Some([0u8; 32]) => Err(Missing(format!(
            "{} does not begin the hash chain and there is no books checkpoint: older files \
             were deleted",
            file.display()
        ))),
        None => Ok(()),
    }
}

/// Rebuild `ledger` from the log at `log` at start: the books, the desks' notionals and the
/// latch's counts in windows of `window`.
pub fn restore(
    ledger: &InMemoryRiskLedger,
    log: &Path,
    key: Option<&ChainKey>,
    window: Duration,
) -> Result<Replayed, Missing> {
    let started = Instant::now();
    let r = replay_latched(log, key, true, window)?;
    ledger.load(
        r.books.iter().map(|(k, b)| (k.clone(), (*b).into())),
        r.desks.iter().map(|(k, d)| (k.clone(), (*d).into())),
    );
    if let Some(latch) = &r.latch {
        ledger.load_latch(latch.symbols.clone());
    }
    tracing::info!(
        checkpoint = r.checkpoint.as_ref().map(|c| c.file.as_str()),
        files = r.files,
        lines = r.lines,
        orders = r.orders,
        unreadable = r.unreadable,
        symbols = r.books.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "risk books rebuilt from the checkpoint and the audit log"
    );
    Ok(r)
}

/// Why a checkpoint or a baseline could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Missing(#[from] Missing),
    #[error("cannot write the books checkpoint: {0}")]
    Write(std::io::Error),
    #[error("{path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The audit log's retire hook: carry every rotated file into the checkpoint, so retention
/// may delete them; with the latch's counts in windows of `window`, when given.
pub fn checkpoint_rotated(
    log: &Path,
    key: Option<&ChainKey>,
    window: Option<Duration>,
) -> Result<(), CheckpointError> {
    let before = read_checkpoint(log)?;
    let r = replay_with(log, key, before.as_ref(), false, window)?;
    let Some(covers) = r.last else {
        return Ok(());
    };
    if before.as_ref().is_some_and(|cp| cp.covers == covers) {
        return Ok(());
    }
    let cp = Checkpoint {
        format: FORMAT.into(),
        covers,
        written_at: OffsetDateTime::now_utc(),
        reconciled: before.and_then(|b| b.reconciled),
        books: r.books,
        desks: r.desks,
        latch: r.latch,
    };
    write_checkpoint(log, &cp).map_err(CheckpointError::Write)?;
    tracing::info!(covers = %cp.covers.file, lines = cp.covers.lines, symbols = cp.books.len(), "risk books checkpoint written");
    Ok(())
}

/// A baseline for missing history: `books` as of just before the first retained line, which
/// a start replays the retained log on top of. The checkpoint names the first retained line's
/// `prev_hash` as its last hash, so a start still checks that nothing else is missing. Not
/// written: see [`write_checkpoint`].
pub fn baseline(
    log: &Path,
    key: Option<&ChainKey>,
    books: BTreeMap<String, Book>,
    reconciled: Reconciled,
) -> Result<Checkpoint, CheckpointError> {
    let first_link = files(log).iter().find_map(|f| first_link(f).transpose());
    let last_hash = match (key, first_link.transpose()?) {
        (Some(k), Some(h)) => Some(hash_text(k, &h)),
        (Some(k), None) => Some(hash_text(k, &[0u8; 32])),
        (None, _) => None,
    };
    Ok(Checkpoint {
        format: FORMAT.into(),
        covers: Covers {
            file: String::new(),
            lines: 0,
            last_hash,
        },
        written_at: OffsetDateTime::now_utc(),
        reconciled: Some(reconciled),
        books,
        desks: BTreeMap::new(),
        latch: None,
    })
}

/// The `prev_hash` of the first line of `file`, if it has a line with one.
fn first_link(file: &Path) -> Result<Option<[u8; 32]>, CheckpointError> {
    let read = |cause| CheckpointError::Read {
        path: file.to_owned(),
        cause,
    };
    let f = std::fs::File::open(file).map_err(read)?;
    let reader = std::io::BufReader::new(f);
    for line in reader.split(b'\n') {
        let line = line.map_err(read)?;
        if !line.is_empty() {
            return Ok(link_of(&line).ok().flatten().map(|(_, h)| h));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latch_counts_per_window_and_never_goes_back() {
        let mut latch = Latch::new(Duration::from_secs(60));
        // The start of a minute.
        let t: i64 = 1_761_000_000_000;
        for i in 0..3 {
            latch.count("AAPL", t + i * 1_000);
        }
        assert_eq!(latch.symbols["AAPL"], (t / 60_000, 3));
        // An order of an earlier window, read after, counts in the later one.
        latch.count("AAPL", t - 1);
        assert_eq!(latch.symbols["AAPL"], (t / 60_000, 4));
        // The next window starts over.
        latch.count("AAPL", t + 60_000);
        assert_eq!(latch.symbols["AAPL"], (t / 60_000 + 1, 1));
    }
}
