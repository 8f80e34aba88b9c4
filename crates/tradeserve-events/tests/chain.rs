//! The audit log's hash chain: a log written across rotations and restarts verifies, from
//! genesis to a head equal to its last line's hash; each kind of tampering — an edited, a
//! deleted, an inserted, a swapped line — is reported at the exact line, and only there; a torn
//! tail is reported before the restart and cut by it, the chain going on from the last whole
//! line; a keyed chain refuses a forger who recomputed plain hashes; lines from before the
//! chain existed and files removed by retention are said, not failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tradeserve_core::ports::EventSink;
use tradeserve_events::audit_log::files;
use tradeserve_events::chain::{ChainKey, ProblemKind, Verified, verify};
use tradeserve_events::{AuditLog, AuditLogConfig, SinkMetrics};
use tradeserve_testkit::{HANG, sample_event};

fn config(path: &Path, chain: Option<ChainKey>) -> AuditLogConfig {
    AuditLogConfig {
        fsync_interval: Duration::from_millis(20),
        chain,
        ..AuditLogConfig::new(path.to_path_buf())
    }
}

/// Append events `range` to the log at `path`, through a fresh `AuditLog` (a restart).
fn write(path: &Path, chain: Option<ChainKey>, rotate: u64, range: std::ops::Range<u64>) {
    let c = AuditLogConfig {
        rotate_bytes: rotate,
        retain_files: 0,
        ..config(path, chain)
    };
    let log = AuditLog::start(c, SinkMetrics::detached().unwrap()).unwrap();
    for i in range {
        let e = sample_event(uuid::Uuid::from_u64_pair(0, i), "AAPL");
        log.emit(e.into()).unwrap();
    }
    log.shutdown(HANG).unwrap();
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn put(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

/// Each problem as (line, kind).
fn found(v: &Verified) -> Vec<(u64, ProblemKind)> {
    v.problems.iter().map(|p| (p.line, p.kind)).collect()
}

fn sha(line: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(line.as_bytes())))
}

#[test]
fn a_log_written_across_rotations_and_restarts_verifies_to_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    write(&path, Some(ChainKey::Sha256), 8 * 1024, 0..40);
    write(&path, Some(ChainKey::Sha256), 8 * 1024, 40..60);
    let all = files(&path);
    assert!(all.len() > 5, "{all:?}");
    let v = verify(&files(&path), &ChainKey::Sha256).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!((v.lines, v.unchained_before), (60, 0));
    assert_eq!(v.begins, "genesis");
    // Every line links to the one before it, across files.
    let every: Vec<String> = all.iter().flat_map(|f| lines(f)).collect();
    assert_eq!(v.head, sha(every.last().unwrap()));
    assert_eq!(every.len(), 60);
    let first: serde_json::Value = serde_json::from_str(&every[0]).unwrap();
    assert_eq!(first["prev_hash"], format!("sha256:{}", "0".repeat(64)));
    for pair in every.windows(2) {
        let next: serde_json::Value = serde_json::from_str(&pair[1]).unwrap();
        assert_eq!(next["prev_hash"], sha(&pair[0]));
    }
    // The published schema takes the link (the sample event's own shortcomings aside).
    let schema = tradeserve_testkit::event_schema();
    let errors = |v: &serde_json::Value| -> Vec<String> {
        schema.iter_errors(v).map(|e| e.to_string()).collect()
    };
    let mut unlinked = first.clone();
    unlinked.as_object_mut().unwrap().remove("prev_hash");
    assert_eq!(errors(&first), errors(&unlinked));
}

#[test]
fn each_kind_of_tampering_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    write(&path, Some(ChainKey::Sha256), u64::MAX, 0..20);
    let original = lines(&path);
    let check = |edit: &dyn Fn(&mut Vec<String>)| {
        let mut l = original.clone();
        edit(&mut l);
        put(&path, &l);
        verify(&files(&path), &ChainKey::Sha256).unwrap()
    };

    // An edited value on line 10 (a price): line 11 no longer follows it.
    let v = check(&|l| l[9] = l[9].replacen("\"price\":", "\"price\":1", 1));
    assert_eq!(found(&v), [(11, ProblemKind::BrokenLink)]);

    // Line 10 deleted: the old line 11 (now 10) follows a line that is not there.
    let v = check(&|l| {
        l.remove(9);
    });
    assert_eq!(found(&v), [(10, ProblemKind::BrokenLink)]);

    // Lines 5 to 8 deleted.
    let v = check(&|l| {
        l.drain(4..8);
    });
    assert_eq!(found(&v), [(5, ProblemKind::BrokenLink)]);

    // A copy of line 3 inserted after line 10: it breaks at 11 (it follows line 2), and line 12
    // (the old 11) follows line 10, skipping the copy.
    let v = check(&|l| {
        let copy = l[2].clone();
        l.insert(10, copy);
    });
    assert_eq!(
        found(&v),
        [(11, ProblemKind::Skipped), (12, ProblemKind::Skipped)]
    );
    assert!(
        v.problems[0]
            .message
            .starts_with(&format!("follows {}:2,", path.display())),
        "{}",
        v.problems[0].message
    );

    // A forged line inserted after line 10 with no link at all.
    let v = check(&|l| l.insert(10, r#"{"decision_id":"forged"}"#.into()));
    assert_eq!(
        found(&v),
        [(11, ProblemKind::Unchained), (12, ProblemKind::Skipped)]
    );

    // Lines 10 and 11 swapped.
    let v = check(&|l| l.swap(9, 10));
    assert_eq!(
        found(&v),
        [
            (10, ProblemKind::BrokenLink),
            (11, ProblemKind::Skipped),
            (12, ProblemKind::Skipped)
        ]
    );

    // Not JSON any more.
    let v = check(&|l| l[4] = "garbage".into());
    assert_eq!(
        found(&v),
        [(5, ProblemKind::NotJson), (6, ProblemKind::BrokenLink)]
    );

    // Untouched: clean again.
    let v = check(&|_| {});
    assert!(v.ok(), "{:?}", v.problems);
}

#[test]
fn a_torn_tail_is_reported_then_cut_at_restart_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    write(&path, Some(ChainKey::Sha256), u64::MAX, 0..10);
    let whole = std::fs::read(&path).unwrap();
    // A crash in the middle of a write: half a line, no newline.
    let mut torn = whole.clone();
    torn.extend_from_slice(br#"{"decision_id":"0000"#);
    std::fs::write(&path, &torn).unwrap();
    let v = verify(&files(&path), &ChainKey::Sha256).unwrap();
    assert_eq!(found(&v), [(11, ProblemKind::TornTail)]);
    assert_eq!(v.lines, 10);
    // The restart cuts it (and says so), then appends after the last whole line.
    write(&path, Some(ChainKey::Sha256), u64::MAX, 10..15);
    let after = std::fs::read(&path).unwrap();
    assert_eq!(&after[..whole.len()], &whole[..]);
    let v = verify(&files(&path), &ChainKey::Sha256).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!(v.lines, 15);
}

#[test]
fn a_keyed_chain_refuses_a_forger_who_recomputed_plain_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let key = ChainKey::Hmac(b"a secret kept off this host".to_vec());
    write(&path, Some(key.clone()), u64::MAX, 0..8);
    let v = verify(&files(&path), &key).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert!(v.head.starts_with("hmac-sha256:"));
    // The wrong key, or none: every link fails.
    let wrong = verify(
        &files(&path),
        &ChainKey::Hmac(b"another secret, same length".to_vec()),
    )
    .unwrap();
    assert_eq!(wrong.problems.len(), 7, "{:?}", wrong.problems);
    let plain = verify(&files(&path), &ChainKey::Sha256).unwrap();
    assert_eq!(plain.problems.len(), 8);
    assert!(plain.problems[0].message.contains("verify with the key"));

    // A forger edits line 4 and rewrites every later link with plain SHA-256 (all one can
    // without the key): the keyed check still breaks at line 5.
    let mut l = lines(&path);
    l[3] = l[3].replacen("\"price\":", "\"price\":1", 1);
    for i in 4..l.len() {
        let prev = format!("hmac-sha256:{}", &sha(&l[i - 1])["sha256:".len()..]);
        let at = l[i].rfind("\"prev_hash\"").unwrap();
        l[i] = format!("{}\"prev_hash\":\"{prev}\"}}", &l[i][..at]);
    }
    put(&path, &l);
    let v = verify(&files(&path), &key).unwrap();
    assert_eq!(v.problems[0].line, 5, "{:?}", v.problems);
}

#[test]
fn lines_from_before_the_chain_and_files_pruned_by_retention_are_said_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    write(&path, None, u64::MAX, 0..5);
    write(&path, Some(ChainKey::Sha256), u64::MAX, 5..10);
    let v = verify(&files(&path), &ChainKey::Sha256).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!(v.unchained_before, 5);
    assert_eq!(
        v.begins,
        format!("{}:6 (after 5 unchained lines)", path.display())
    );

    // Rotated files removed by retention: the chain begins at the oldest line still there.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    write(&path, Some(ChainKey::Sha256), 8 * 1024, 0..40);
    let all: Vec<PathBuf> = files(&path);
    std::fs::remove_file(&all[0]).unwrap();
    let v = verify(&files(&path), &ChainKey::Sha256).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!(
        v.begins,
        format!(
            "{}:1, whose predecessor is not in the log (rotated out, or removed)",
            all[1].display()
        )
    );
}
