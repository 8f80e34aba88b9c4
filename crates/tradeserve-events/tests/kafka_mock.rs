//! The Kafka sink against librdkafka's mock cluster: delivery, spooling while the broker is
//! down, in-order replay when it is back, a spool that survives a restart, and the
//! write-ahead log: what a crash left undelivered is delivered at the next start, and
//! delivered segments are deleted.
//! (The real-broker tests run against tansu.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tradeserve_core::decision::DecisionEvent;
use tradeserve_core::ports::{EmitError, EventSink};
use tradeserve_events::kafka::{KafkaMetrics, KafkaSink, KafkaSinkConfig};
use tradeserve_events::spool::SpoolConfig;
use tradeserve_events::wal::WalConfig;
use tradeserve_testkit::{HANG, read_topic, sample_event, wait_for};

const TOPIC: &str = "trading_decisions";

fn event(i: u64) -> DecisionEvent {
    let symbols = ["AAPL", "MSFT", "SPY"];
    sample_event(uuid::Uuid::from_u64_pair(7, i), symbols[(i % 3) as usize])
}

fn config(brokers: &str, spool: &std::path::Path) -> KafkaSinkConfig {
    KafkaSinkConfig {
        brokers: brokers.to_owned(),
        topic: TOPIC.into(),
        partitions: 3,
        replication: 1,
        client: BTreeMap::new(),
        queue_capacity: 100_000,
        spool: SpoolConfig {
            dir: spool.to_path_buf(),
            segment_bytes: 64 * 1024,
        },
        linger: Duration::from_millis(5),
        compression: "lz4".into(),
        flush_timeout: Duration::from_secs(5),
        probe_interval: Duration::from_millis(200),
        create_topic: false,
        // Small segments, so the tests also retire and delete delivered files.
        wal: Some(WalConfig {
            path: spool.join("wal.jsonl"),
            fsync_interval: Duration::from_millis(20),
            segment_bytes: 16 * 1024,
        }),
    }
}

/// A mock cluster with the topic, and an empty spool folder.
fn cluster() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    tempfile::TempDir,
) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    (cluster, tempfile::tempdir().unwrap())
}

/// A sink on `cluster` spooling (and logging ahead) into `spool`, with its metrics.
fn start_sink<C: rdkafka::ClientContext>(
    cluster: &MockCluster<'static, C>,
    spool: &std::path::Path,
) -> (KafkaSink, KafkaMetrics) {
    let metrics = KafkaMetrics::detached().unwrap();
    let sink =
        KafkaSink::start(config(&cluster.bootstrap_servers(), spool), metrics.clone()).unwrap();
    (sink, metrics)
}

/// Every (key, decision_id) on the topic, in partition order, read until `expect` distinct
/// decisions were seen (delivery is at least once: a replay may repeat some).
fn consume_all(brokers: &str, expect: usize) -> Vec<(String, u128)> {
    let mut seen = BTreeSet::new();
    read_topic(brokers, TOPIC, 3, |r| {
        seen.insert(r.decision_id());
        seen.len() >= expect
    })
    .into_iter()
    .map(|r| {
        let id = uuid::Uuid::parse_str(&r.decision_id()).unwrap().as_u128();
        (String::from_utf8(r.key).unwrap(), id)
    })
    .collect()
}

#[test]
fn every_event_reaches_the_topic_keyed_by_symbol() {
    let (cluster, spool) = cluster();
    let (sink, metrics) = start_sink(&cluster, spool.path());
    for i in 0..500 {
        sink.emit(event(i).into()).unwrap();
    }
    // Delivered before the shutdown: its flush is bounded (`flush_timeout`), and on a slow
    // machine what it leaves goes to the spool, which is right but not what this checks.
    wait_for("every delivery", || metrics.delivered.get() == 500);
    let report = sink.shutdown(HANG).unwrap();
    assert_eq!(report.spooled, 0);
    assert_eq!(metrics.delivered.get(), 500);
    let got = consume_all(&cluster.bootstrap_servers(), 500);
    assert_eq!(got.len(), 500);
    let ids: BTreeSet<u128> = got.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids,
        (0..500u64)
            .map(|i| uuid::Uuid::from_u64_pair(7, i).as_u128())
            .collect()
    );
    // Key = symbol, and per-symbol order is the emit order.
    for symbol in ["AAPL", "MSFT", "SPY"] {
        let seq: Vec<u128> = got
            .iter()
            .filter(|(k, _)| k == symbol)
            .map(|(_, id)| *id)
            .collect();
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, sorted, "{symbol} out of order");
    }
}

#[test]
fn events_spool_while_the_broker_is_down_and_replay_in_order_when_it_is_back() {
    let (cluster, spool) = cluster();
    let (sink, metrics) = start_sink(&cluster, spool.path());
    for i in 0..100 {
        sink.emit(event(i).into()).unwrap();
    }
    wait_for("first deliveries", || metrics.delivered.get() == 100);
    cluster.broker_down(1).unwrap();
    for i in 100..400 {
        sink.emit(event(i).into()).unwrap();
        std::thread::sleep(Duration::from_micros(500));
    }
    wait_for("events to reach the spool", || metrics.spooled.get() > 0);
    cluster.broker_up(1).unwrap();
    wait_for("the spool to drain", || {
        metrics.delivered.get() + metrics.replayed.get() >= 400 && metrics.spool_backlog.get() == 0
    });
    let report = sink.shutdown(HANG).unwrap();
    assert_eq!(report.spooled, 0);
    let got = consume_all(&cluster.bootstrap_servers(), 400);
    let ids: BTreeSet<u128> = got.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids.len(),
        400,
        "every decision on the topic (duplicates allowed)"
    );
}

#[test]
fn the_spool_survives_a_restart_and_is_delivered_first() {
    let (cluster, spool) = cluster();
    cluster.broker_down(1).unwrap();
    let (sink, _) = start_sink(&cluster, spool.path());
    for i in 0..50 {
        sink.emit(event(i).into()).unwrap();
    }
    // Shutdown with the broker down: everything ends up in the spool, on disk.
    let report = sink.shutdown(HANG).unwrap();
    assert_eq!(report.spooled, 50, "{report:?}");
    cluster.broker_up(1).unwrap();
    let (sink, metrics) = start_sink(&cluster, spool.path());
    wait_for("the old spool to be replayed", || {
        metrics.replayed.get() == 50
    });
    sink.emit(event(50).into()).unwrap();
    wait_for("the new event's delivery", || metrics.delivered.get() == 1);
    let report = sink.shutdown(HANG).unwrap();
    assert_eq!(report.spooled, 0);
    let got = consume_all(&cluster.bootstrap_servers(), 51);
    let ids: BTreeSet<u128> = got.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 51);
}

#[test]
fn what_a_crash_left_in_the_write_ahead_log_is_delivered_at_the_next_start() {
    let (cluster, spool) = cluster();
    // What a process killed mid-run leaves: 30 lines, the first 10 confirmed delivered
    // (checkpoint), and a torn last line from the write it was killed in.
    let mut text = String::new();
    let mut checkpoint = 0;
    for i in 0..30u64 {
        text.push_str(
            &serde_json::to_string(&tradeserve_core::event::Event::from(event(i))).unwrap(),
        );
        text.push('\n');
        if i == 9 {
            checkpoint = text.len();
        }
    }
    text.push_str(r#"{"schema_version":1,"event_type":"trad"#);
    std::fs::write(spool.path().join("wal.jsonl"), &text).unwrap();
    std::fs::write(
        spool.path().join("wal.checkpoint"),
        format!(r#"{{"active":{checkpoint},"old":null}}"#),
    )
    .unwrap();
    let (sink, metrics) = start_sink(&cluster, spool.path());
    wait_for("the recovered events", || metrics.replayed.get() == 20);
    sink.emit(event(30).into()).unwrap();
    sink.shutdown(HANG).unwrap();
    let got = consume_all(&cluster.bootstrap_servers(), 21);
    let ids: BTreeSet<u128> = got.iter().map(|(_, id)| *id).collect();
    let want: BTreeSet<u128> = (10..31u64)
        .map(|i| uuid::Uuid::from_u64_pair(7, i).as_u128())
        .collect();
    assert_eq!(
        ids, want,
        "exactly the lines past the checkpoint, then the new one"
    );
}

#[test]
fn delivered_write_ahead_segments_are_deleted() {
    let (cluster, spool) = cluster();
    let (sink, metrics) = start_sink(&cluster, spool.path());
    // ~1.4 KB an event: 1,000 events are ~90 segments of 16 KiB.
    for i in 0..1000 {
        sink.emit(event(i).into()).unwrap();
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    wait_for("every delivery", || metrics.delivered.get() == 1000);
    std::thread::sleep(Duration::from_millis(300));
    sink.shutdown(HANG).unwrap();
    let wal = std::fs::metadata(spool.path().join("wal.jsonl"))
        .unwrap()
        .len();
    assert!(
        wal < 2 * 16 * 1024 + 4096,
        "the write-ahead log kept {wal} bytes"
    );
    assert!(
        !spool.path().join("wal.old").exists(),
        "the retired segment was delivered: deleted"
    );
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(spool.path().join("wal.checkpoint")).unwrap())
            .unwrap();
    assert_eq!(checkpoint["active"].as_u64(), Some(wal), "{checkpoint}");
    // A restart finds nothing to deliver again.
    let (sink, metrics) = start_sink(&cluster, spool.path());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        metrics.replayed.get() + metrics.spool_backlog.get() as u64,
        0
    );
    sink.shutdown(HANG).unwrap();
}

#[test]
#[ignore = "mounts a tmpfs: needs root; run by scripts/test.sh"]
fn a_full_disk_under_the_write_ahead_log_refuses_events_and_recovers() {
    let disk = tradeserve_testkit::SmallDisk::mount("96k");
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let mut config = config(&cluster.bootstrap_servers(), disk.path());
    // Segments larger than the disk: the log cannot make room by retiring files.
    if let Some(w) = config.wal.as_mut() {
        w.segment_bytes = 1 << 20;
    }
    let metrics = KafkaMetrics::detached().unwrap();
    let sink = KafkaSink::start(config, metrics.clone()).unwrap();
    let mut accepted = BTreeSet::new();
    let mut refused = 0;
    for i in 0..200u64 {
        match sink.emit(event(i).into()) {
            Ok(()) => {
                accepted.insert(uuid::Uuid::from_u64_pair(7, i).as_u128());
            }
            Err(EmitError::Write(kind)) => {
                assert_eq!(kind, std::io::ErrorKind::StorageFull);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(refused > 0 && !accepted.is_empty(), "{refused} refused");
    assert!(sink.health().unwrap_err().0.contains("No space left"));
    assert_eq!(metrics.wal.unavailable.get(), 1);
    disk.grow("8m");
    wait_for("the log to find room", || sink.health().is_ok());
    sink.emit(event(1000).into()).unwrap();
    accepted.insert(uuid::Uuid::from_u64_pair(7, 1000).as_u128());
    sink.shutdown(HANG).unwrap();
    // Exactly what was accepted reached the topic; nothing refused did.
    let got = consume_all(&cluster.bootstrap_servers(), accepted.len());
    let ids: BTreeSet<u128> = got.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, accepted);
}
