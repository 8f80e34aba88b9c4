//! The audit log: an event is in the file when `emit` returns; a refused event is never in
//! it; a failed write leaves only whole lines; a torn tail is cut at start; rotation keeps
//! every line, in order, across files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tradeserve_core::decision::DecisionEvent;
use tradeserve_core::ports::{EmitError, EventSink};
use tradeserve_events::audit_log::{RetireHook, TornTail, files, repair_tail, rotated_files};
use tradeserve_events::{AuditLog, AuditLogConfig, SinkMetrics};
use tradeserve_testkit::{HANG, sample_event, wait_for};

fn event(i: u64) -> DecisionEvent {
    sample_event(uuid::Uuid::from_u64_pair(0, i), "AAPL")
}

fn config(path: PathBuf) -> AuditLogConfig {
    AuditLogConfig {
        fsync_interval: Duration::from_millis(20),
        probe_interval: Duration::from_millis(50),
        ..AuditLogConfig::new(path)
    }
}

/// The decision ids of every line of `paths`, in order; panics on a line that is not a
/// whole JSON object.
fn ids(paths: &[PathBuf]) -> Vec<u128> {
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{}: torn tail",
            p.display()
        );
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "{}: not one JSON object per line ({e}): {line}",
                    p.display()
                )
            });
            out.push(
                uuid::Uuid::parse_str(v["decision_id"].as_str().unwrap())
                    .unwrap()
                    .as_u128(),
            );
        }
    }
    out
}

#[test]
fn an_event_is_in_the_file_when_emit_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit/decisions.jsonl");
    let metrics = SinkMetrics::detached().unwrap();
    let log = AuditLog::start(config(path.clone()), metrics.clone()).unwrap();
    for i in 0..200 {
        log.emit(event(i).into()).unwrap();
        // Read back through another file handle, before any flush or shutdown.
        assert_eq!(ids(std::slice::from_ref(&path)).len() as u64, i + 1);
    }
    for i in 200..5000 {
        log.emit(event(i).into()).unwrap();
    }
    assert_eq!(log.shutdown(HANG).unwrap(), 5000);
    assert_eq!(ids(&[path]), (0..5000u128).collect::<Vec<_>>());
    assert_eq!(
        (metrics.written.get(), metrics.write_errors.get()),
        (5000, 0)
    );
    // After shutdown the sink refuses, and counts it.
    assert_eq!(log.emit(event(1).into()), Err(EmitError::Closed));
    assert_eq!(metrics.dropped_closed.get(), 1);
}

#[test]
fn concurrent_writers_never_interleave_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let log = std::sync::Arc::new(
        AuditLog::start(config(path.clone()), SinkMetrics::detached().unwrap()).unwrap(),
    );
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let log = &log;
            s.spawn(move || {
                for i in 0..2000 {
                    log.emit(event(t * 10_000 + i).into()).unwrap();
                }
            });
        }
    });
    log.shutdown(HANG).unwrap();
    let mut got = ids(&[path]);
    got.sort_unstable();
    let mut want: Vec<u128> = (0..4u128)
        .flat_map(|t| (0..2000u128).map(move |i| t * 10_000 + i))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn a_torn_tail_is_cut_at_start_and_the_next_event_gets_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let whole = format!("{}\n", serde_json::to_string(&event(1)).unwrap());
    let torn = &serde_json::to_string(&event(2)).unwrap()[..100];
    std::fs::write(&path, format!("{whole}{torn}")).unwrap();
    assert_eq!(
        repair_tail(&path).unwrap(),
        Some(TornTail {
            offset: whole.len() as u64,
            bytes: 100
        })
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
    // Torn again, and this time the log itself repairs it when it opens.
    std::fs::write(&path, format!("{whole}{torn}")).unwrap();
    let log = AuditLog::start(config(path.clone()), SinkMetrics::detached().unwrap()).unwrap();
    log.emit(event(3).into()).unwrap();
    log.shutdown(HANG).unwrap();
    assert_eq!(ids(std::slice::from_ref(&path)), vec![1, 3]);
    // A file that is only a fragment is emptied; a whole file is left alone.
    std::fs::write(&path, torn).unwrap();
    assert_eq!(repair_tail(&path).unwrap().unwrap().offset, 0);
    assert_eq!(repair_tail(&path).unwrap(), None);
    assert_eq!(
        repair_tail(&dir.path().join("missing.jsonl")).unwrap(),
        None
    );
}

#[test]
fn rotation_keeps_every_line_in_order_and_retention_prunes_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let keep_all = AuditLogConfig {
        rotate_bytes: 8 * 1024,
        retain_files: 0,
        ..config(path.clone())
    };
    let log = AuditLog::start(keep_all, SinkMetrics::detached().unwrap()).unwrap();
    for i in 0..300 {
        log.emit(event(i).into()).unwrap();
    }
    log.shutdown(HANG).unwrap();
    let all = files(&path);
    assert!(all.len() > 10, "{all:?}");
    assert_eq!(all.last(), Some(&path));
    assert_eq!(ids(&all), (0..300u128).collect::<Vec<_>>());

    let retain = AuditLogConfig {
        rotate_bytes: 8 * 1024,
        retain_files: 3,
        ..config(path.clone())
    };
    let log = AuditLog::start(retain, SinkMetrics::detached().unwrap()).unwrap();
    for i in 300..400 {
        log.emit(event(i).into()).unwrap();
    }
    log.shutdown(HANG).unwrap();
    let kept = rotated_files(&path);
    assert_eq!(kept.len(), 3, "{kept:?}");
    // What is left is the newest tail of the sequence, still whole and in order.
    let got = ids(&files(&path));
    assert_eq!(got.last(), Some(&399));
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn retention_waits_for_the_retire_hook() {
    // A hook that fails while `refuse` is set: no rotated file is deleted; once it succeeds,
    // retention catches up. Every call sees the log's path.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let refuse = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let hook = {
        let (refuse, calls, want) = (refuse.clone(), calls.clone(), path.clone());
        RetireHook(Arc::new(move |log: &std::path::Path| {
            assert_eq!(log, want);
            calls.fetch_add(1, Ordering::SeqCst);
            match refuse.load(Ordering::SeqCst) {
                true => Err("not yet".into()),
                false => Ok(()),
            }
        }))
    };
    let c = AuditLogConfig {
        rotate_bytes: 8 * 1024,
        retain_files: 2,
        on_retired: Some(hook),
        ..config(path.clone())
    };
    let log = AuditLog::start(c.clone(), SinkMetrics::detached().unwrap()).unwrap();
    for i in 0..200 {
        log.emit(event(i).into()).unwrap();
    }
    log.shutdown(HANG).unwrap();
    let kept = rotated_files(&path).len();
    assert!(kept > 2 && calls.load(Ordering::SeqCst) > 0, "{kept} kept");
    assert_eq!(ids(&files(&path)), (0..200u128).collect::<Vec<_>>());

    refuse.store(false, Ordering::SeqCst);
    let log = AuditLog::start(c, SinkMetrics::detached().unwrap()).unwrap();
    for i in 200..260 {
        log.emit(event(i).into()).unwrap();
    }
    log.shutdown(HANG).unwrap();
    assert_eq!(rotated_files(&path).len(), 2);
}

#[test]
#[ignore = "mounts a tmpfs: needs root; run by scripts/test.sh"]
fn a_full_disk_refuses_events_leaves_whole_lines_and_recovers_by_itself() {
    let disk = tradeserve_testkit::SmallDisk::mount("64k");
    let path = disk.path().join("decisions.jsonl");
    let metrics = SinkMetrics::detached().unwrap();
    let log = AuditLog::start(config(path.clone()), metrics.clone()).unwrap();
    let mut accepted = Vec::new();
    let mut refused = 0u64;
    for i in 0..400u64 {
        match log.emit(event(i).into()) {
            Ok(()) => accepted.push(u128::from(i)),
            Err(EmitError::Write(kind)) => {
                assert_eq!(kind, std::io::ErrorKind::StorageFull);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(refused > 0 && !accepted.is_empty(), "{refused} refused");
    // Exactly the accepted events, each on a whole line: nothing torn, nothing glued.
    assert_eq!(ids(std::slice::from_ref(&path)), accepted);
    assert!(log.health().unwrap_err().0.contains("No space left"));
    assert_eq!(metrics.unavailable.get(), 1);
    assert_eq!(metrics.write_errors.get(), refused);
    assert_eq!(metrics.written.get(), accepted.len() as u64);

    // Room again: the syncer's probe notices without any event being written.
    disk.grow("4m");
    wait_for("the log to notice the room", || log.health().is_ok());
    assert_eq!(metrics.unavailable.get(), 0);
    for i in 1000..1010u64 {
        log.emit(event(i).into()).unwrap();
        accepted.push(u128::from(i));
    }
    log.shutdown(HANG).unwrap();
    assert_eq!(ids(&[path]), accepted);
}
