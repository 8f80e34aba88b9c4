//! The Kafka sink against librdkafka's mock cluster: delivery, spooling while the broker is
//! down, in-order replay when it is back, and a spool that survives a restart.
//! (The real-broker tests run against tansu.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use tradeserve_core::decision::DecisionEvent;
use tradeserve_core::ports::EventSink;
use tradeserve_events::kafka::{KafkaMetrics, KafkaSink, KafkaSinkConfig};
use tradeserve_events::spool::SpoolConfig;
use tradeserve_testkit::{read_topic, sample_event};

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
    }
}

/// Every (key, decision_id) on the topic, in partition order, read until `expect` distinct
/// decisions were seen (delivery is at least once: a replay may repeat some).
fn consume_all(brokers: &str, expect: usize, within: Duration) -> Vec<(String, u128)> {
    let mut seen = BTreeSet::new();
    read_topic(brokers, TOPIC, 3, within, |r| {
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

fn wait(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_event_reaches_the_topic_keyed_by_symbol() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let metrics = KafkaMetrics::detached().unwrap();
    let sink = KafkaSink::start(
        config(&cluster.bootstrap_servers(), spool.path()),
        metrics.clone(),
    )
    .unwrap();
    for i in 0..500 {
        sink.emit(event(i).into()).unwrap();
    }
    let report = sink.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!(report.spooled, 0);
    assert_eq!(metrics.delivered.get(), 500);
    let got = consume_all(&cluster.bootstrap_servers(), 500, Duration::from_secs(20));
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
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let metrics = KafkaMetrics::detached().unwrap();
    let sink = KafkaSink::start(
        config(&cluster.bootstrap_servers(), spool.path()),
        metrics.clone(),
    )
    .unwrap();
    for i in 0..100 {
        sink.emit(event(i).into()).unwrap();
    }
    wait("first deliveries", Duration::from_secs(20), || {
        metrics.delivered.get() == 100
    });
    cluster.broker_down(1).unwrap();
    for i in 100..400 {
        sink.emit(event(i).into()).unwrap();
        std::thread::sleep(Duration::from_micros(500));
    }
    wait("events to reach the spool", Duration::from_secs(30), || {
        metrics.spooled.get() > 0
    });
    cluster.broker_up(1).unwrap();
    wait("the spool to drain", Duration::from_secs(60), || {
        metrics.delivered.get() + metrics.replayed.get() >= 400 && metrics.spool_backlog.get() == 0
    });
    let report = sink.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!(report.spooled, 0);
    let got = consume_all(&cluster.bootstrap_servers(), 400, Duration::from_secs(30));
    let ids: BTreeSet<u128> = got.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids.len(),
        400,
        "every decision on the topic (duplicates allowed)"
    );
}

#[test]
fn the_spool_survives_a_restart_and_is_delivered_first() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let spool = tempfile::tempdir().unwrap();
    cluster.broker_down(1).unwrap();
    let metrics = KafkaMetrics::detached().unwrap();
    let sink = KafkaSink::start(
        config(&cluster.bootstrap_servers(), spool.path()),
        metrics.clone(),
    )
    .unwrap();
    for i in 0..50 {
        sink.emit(event(i).into()).unwrap();
    }
    // Shutdown with the broker down: everything ends up in the spool, on disk.
    let report = sink.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(report.spooled, 50, "{report:?}");
    cluster.broker_up(1).unwrap();
    let metrics = KafkaMetrics::detached().unwrap();
    let sink = KafkaSink::start(
        config(&cluster.bootstrap_servers(), spool.path()),
        metrics.clone(),
    )
    .unwrap();
    wait(
        "the old spool to be replayed",
        Duration::from_secs(30),
        || metrics.replayed.get() == 50,
    );
    sink.emit(event(50).into()).unwrap();
    let report = sink.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!(report.spooled, 0);
    let got = consume_all(&cluster.bootstrap_servers(), 51, Duration::from_secs(30));
    let ids: BTreeSet<u128> = got.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 51);
}
