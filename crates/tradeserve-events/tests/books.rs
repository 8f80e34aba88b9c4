//! The risk books against the real audit log (chained, rotated, pruned by retention): the
//! checkpoint written at each rotation carries what retention deletes, so a replay gives the
//! same books as the whole history; history that is really missing is named, never read as
//! flat; an operator's baseline is replayed on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use time::macros::datetime;
use tradeserve_core::decision::RiskCheckFlags;
use tradeserve_core::ports::EventSink;
use tradeserve_core::types::Action;
use tradeserve_events::audit_log::{RetireHook, files, rotated_files};
use tradeserve_events::books::{
    self, Book, Reconciled, baseline, checkpoint_path, read_checkpoint, replay, write_checkpoint,
};
use tradeserve_events::chain::ChainKey;
use tradeserve_events::{AuditLog, AuditLogConfig, SinkMetrics};
use tradeserve_testkit::{HANG, sample_event};

const CHECKS: RiskCheckFlags = RiskCheckFlags {
    position_limit: true,
    concentration: true,
    order_notional: true,
    restricted_list: true,
    daily_order_count: true,
    kill_switch: true,
    order_quantity: true,
    desk_daily_notional: true,
    order_rate: true,
    repeated_execution: true,
};

/// Event `i`: an approved, risk-checked order (BUY 10 on even `i`, SELL 5 on odd) of one of
/// three symbols on one of two days; every fifth is `risk_check: false` and books nothing.
fn event(i: u64) -> tradeserve_core::DecisionEvent {
    let symbol = ["AAPL", "MSFT", "SPY"][(i % 3) as usize];
    let mut e = sample_event(uuid::Uuid::from_u64_pair(9, i), symbol);
    e.timestamp = if i < 150 {
        datetime!(2025-10-14 15:00 UTC)
    } else {
        datetime!(2025-10-15 15:00 UTC)
    };
    (e.action, e.quantity) = if i.is_multiple_of(2) {
        (Action::Buy, 10)
    } else {
        (Action::Sell, 5)
    };
    e.risk_checks = (!i.is_multiple_of(5)).then_some(CHECKS);
    e
}

/// Write events `range` through an audit log that rotates every 8 KiB and keeps `retain`
/// rotated files, with the books' retire hook when `hook`.
fn write(path: &Path, retain: usize, hook: bool, range: std::ops::Range<u64>) {
    let key = Some(ChainKey::Sha256);
    let on_retired = hook.then(|| {
        RetireHook(Arc::new(|log: &Path| {
            books::checkpoint_rotated(log, Some(&ChainKey::Sha256), None).map_err(Into::into)
        }))
    });
    let config = AuditLogConfig {
        rotate_bytes: 8 * 1024,
        retain_files: retain,
        chain: key,
        on_retired,
        ..AuditLogConfig::new(path.to_path_buf())
    };
    let log = AuditLog::start(config, SinkMetrics::detached().unwrap()).unwrap();
    for i in range {
        log.emit(event(i).into()).unwrap();
    }
    log.shutdown(HANG).unwrap();
}

/// The books the whole history gives (every file kept, no checkpoint).
fn full_history(range: std::ops::Range<u64>) -> BTreeMap<String, Book> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 0, false, range);
    let r = replay(&path, Some(&ChainKey::Sha256), true).unwrap();
    assert!(r.checkpoint.is_none());
    r.books
}

#[test]
fn retention_deletes_only_what_the_checkpoint_carries_and_the_books_survive_it() {
    let want = full_history(0..300);
    // Not vacuous: positions of several symbols, and the second day's counts.
    assert_eq!(want.len(), 3);
    assert!(want.values().all(|b| b.position != 0 && b.orders_today > 0));
    assert_eq!(
        want["AAPL"].day,
        Some(time::macros::date!(2025 - 10 - 15)),
        "{want:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // Three processes, one after the other, as restarts would be.
    write(&path, 1, true, 0..100);
    write(&path, 1, true, 100..200);
    write(&path, 1, true, 200..300);
    assert_eq!(rotated_files(&path).len(), 1, "retention ran");
    let cp = read_checkpoint(&path).unwrap().expect("a checkpoint");
    assert_eq!(cp.format, books::FORMAT);
    assert!(
        cp.covers
            .last_hash
            .as_deref()
            .unwrap()
            .starts_with("sha256:")
    );
    let got = replay(&path, Some(&ChainKey::Sha256), true).unwrap();
    assert!(got.checkpoint.is_some());
    assert_eq!(got.books, want);

    // The checkpoint reads as it is documented: days as dates, positions signed.
    let text = std::fs::read_to_string(checkpoint_path(&path)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["books"]["AAPL"]["day"]
            .as_str()
            .unwrap()
            .starts_with("2025-10-1")
    );
    assert!(v["books"]["AAPL"]["position"].is_i64());
}

#[test]
fn history_that_is_really_missing_is_named_never_read_as_flat() {
    let key = ChainKey::Sha256;
    // Pruned without a checkpoint (as before checkpoints existed): the log begins mid-chain.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 2, false, 0..300);
    let missing = replay(&path, Some(&key), true).unwrap_err();
    assert!(
        missing.0.contains("does not begin the hash chain"),
        "{missing}"
    );

    // A checkpoint, then the file after it deleted: the next file does not continue it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 0, true, 0..300);
    let rotated = rotated_files(&path);
    assert!(rotated.len() >= 4, "{rotated:?}");
    // A checkpoint over the first file only, as an earlier rotation would have left it:
    // made by the retire hook on a copy of that file alone.
    let first = &rotated[0];
    let only_first = tempfile::tempdir().unwrap();
    let copy = only_first.path().join("audit.jsonl");
    std::fs::copy(first, only_first.path().join(first.file_name().unwrap())).unwrap();
    books::checkpoint_rotated(&copy, Some(&key), None).unwrap();
    let cp = read_checkpoint(&copy).unwrap().unwrap();
    assert_eq!(cp.covers.file, first.file_name().unwrap().to_string_lossy());
    write_checkpoint(&path, &cp).unwrap();
    assert!(
        replay(&path, Some(&key), true).is_ok(),
        "consistent as it is"
    );
    std::fs::remove_file(&rotated[1]).unwrap();
    let missing = replay(&path, Some(&key), true).unwrap_err();
    assert!(
        missing.0.contains("does not continue the books checkpoint"),
        "{missing}"
    );

    // An unreadable checkpoint.
    std::fs::write(checkpoint_path(&path), b"{not json").unwrap();
    let missing = replay(&path, Some(&key), true).unwrap_err();
    assert!(missing.0.contains("not a books checkpoint"), "{missing}");

    // Unchained and rotated, without a checkpoint: nothing shows no file was deleted.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let config = AuditLogConfig {
        rotate_bytes: 8 * 1024,
        retain_files: 0,
        ..AuditLogConfig::new(path.clone())
    };
    let log = AuditLog::start(config, SinkMetrics::detached().unwrap()).unwrap();
    for i in 0..100 {
        log.emit(event(i).into()).unwrap();
    }
    log.shutdown(HANG).unwrap();
    let missing = replay(&path, None, true).unwrap_err();
    assert!(missing.0.contains("not chained"), "{missing}");
}

#[test]
fn an_operators_baseline_is_replayed_on_and_the_next_rotation_carries_it() {
    let key = ChainKey::Sha256;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 2, false, 0..300);
    assert!(replay(&path, Some(&key), true).is_err());
    // What the retained files alone hold, on top of a baseline of 1,000 AAPL.
    let mut retained = BTreeMap::new();
    for f in files(&path) {
        let only = tempfile::tempdir().unwrap();
        std::fs::copy(&f, only.path().join("audit.jsonl")).unwrap();
        let r = replay_unchecked(&only.path().join("audit.jsonl"));
        for (s, b) in r {
            let e: &mut i64 = retained.entry(s).or_default();
            *e += b;
        }
    }
    let books = BTreeMap::from([(
        "AAPL".to_owned(),
        Book {
            position: 1_000,
            day: None,
            orders_today: 0,
        },
    )]);
    let reconciled = Reconciled {
        at: time::OffsetDateTime::now_utc(),
        by: "risk-officer".into(),
        reason: "positions from the OMS after retention outran the books".into(),
    };
    let cp = baseline(&path, Some(&key), books, reconciled).unwrap();
    write_checkpoint(&path, &cp).unwrap();
    let got = replay(&path, Some(&key), true).unwrap();
    assert_eq!(got.books["AAPL"].position, 1_000 + retained["AAPL"]);
    assert_eq!(got.books["MSFT"].position, retained["MSFT"]);
    // The next process rotates: the checkpoint moves on, keeping who reconciled.
    write(&path, 2, true, 300..400);
    let cp = read_checkpoint(&path).unwrap().unwrap();
    assert_eq!(cp.reconciled.unwrap().by, "risk-officer");
    assert!(!cp.covers.file.is_empty());
    assert!(replay(&path, Some(&key), true).is_ok());
}

/// Positions from one file's lines alone, no continuity check (a chain that begins anywhere):
/// an unchained, empty baseline.
fn replay_unchecked(path: &Path) -> BTreeMap<String, i64> {
    let reconciled = Reconciled {
        at: time::OffsetDateTime::now_utc(),
        by: "test".into(),
        reason: "one file alone".into(),
    };
    let cp = baseline(path, None, BTreeMap::new(), reconciled).unwrap();
    books::replay_from(path, None, Some(&cp), true)
        .unwrap()
        .books
        .into_iter()
        .map(|(s, b)| (s, b.position))
        .collect()
}
