//! The audit log writes every accepted event exactly once, accounts for every refused one,
//! and never blocks the caller.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use tradeserve_core::decision::DecisionEvent;
use tradeserve_core::ports::{EmitError, EventSink};
use tradeserve_events::{AuditLog, AuditLogConfig, SinkMetrics};
use tradeserve_testkit::sample_event;

fn event(i: u64) -> DecisionEvent {
    sample_event(uuid::Uuid::from_u64_pair(0, i), "AAPL")
}

fn config(dir: &tempfile::TempDir, capacity: usize) -> AuditLogConfig {
    AuditLogConfig {
        path: dir.path().join("audit/decisions.jsonl"),
        queue_capacity: capacity,
        fsync_interval: Duration::from_millis(50),
    }
}

#[test]
fn every_accepted_event_is_written_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = SinkMetrics::detached().unwrap();
    let log = AuditLog::start(config(&dir, 100_000), metrics.clone()).unwrap();
    for i in 0..5000 {
        log.emit(event(i).into()).unwrap();
    }
    assert_eq!(log.shutdown(Duration::from_secs(10)).unwrap(), 5000);
    let text = std::fs::read_to_string(dir.path().join("audit/decisions.jsonl")).unwrap();
    let ids: Vec<u128> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            uuid::Uuid::parse_str(v["decision_id"].as_str().unwrap())
                .unwrap()
                .as_u128()
        })
        .collect();
    assert_eq!(ids, (0..5000u128).collect::<Vec<_>>());
    assert_eq!(
        (
            metrics.enqueued.get(),
            metrics.written.get(),
            metrics.backlog.get()
        ),
        (5000, 5000, 0)
    );
    // After shutdown the sink refuses, and counts it.
    assert_eq!(log.emit(event(1).into()), Err(EmitError::Closed));
    assert_eq!(metrics.dropped_closed.get(), 1);
}

#[test]
fn a_full_queue_refuses_without_blocking_and_counts_every_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = SinkMetrics::detached().unwrap();
    let log = AuditLog::start(config(&dir, 4), metrics.clone()).unwrap();
    let start = Instant::now();
    let mut refused = 0;
    for i in 0..20_000 {
        if log.emit(event(i).into()) == Err(EmitError::QueueFull) {
            refused += 1;
        }
    }
    let elapsed = start.elapsed();
    let written = log.shutdown(Duration::from_secs(10)).unwrap();
    assert!(
        refused > 0,
        "a 4-slot queue should overflow under a 20k burst"
    );
    assert_eq!(metrics.dropped_queue_full.get(), refused);
    assert_eq!(metrics.enqueued.get() + refused, 20_000);
    assert_eq!(written, metrics.enqueued.get());
    let lines = std::fs::read_to_string(dir.path().join("audit/decisions.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(lines, written);
    // Not a timing assertion on the happy path: just proof that emit never waited on the disk.
    assert!(elapsed < Duration::from_secs(5));
}

#[test]
fn reopening_appends() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let log = AuditLog::start(config(&dir, 10), SinkMetrics::detached().unwrap()).unwrap();
        log.emit(event(round).into()).unwrap();
        log.shutdown(Duration::from_secs(5)).unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join("audit/decisions.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 2);
}
