//! The live feed from a Kafka topic (`features.live.kafka`): every replica reads the whole
//! topic itself (partitions assigned, no consumer group), so all replicas hold the same state.
//! At start it seeks each partition to the first record at or after `now - backfill`
//! (`offsets_for_times`; from the beginning when the broker cannot answer that) and reads up
//! to the end offsets it saw at start before the service says it is ready; then it follows the
//! topic. Each record is one bar (`schemas/bar.schema.json`); a bad one is counted by reason
//! and skipped — the consumer never stops on a record. A broker outage lets the symbols go
//! stale (503 `stale_features`) until it is back. The caller decides the thread's priority
//! (the server puts it under `SCHED_IDLE`, inherited by the librdkafka threads it starts, so
//! ingest never delays a decision: docs/BENCHMARKS.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::LiveFeatures;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// `[features.live.kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaFeedConfig {
    /// Bootstrap servers; empty: no Kafka feed (bars only through `POST /api/v1/bars`).
    pub brokers: String,
    pub topic: String,
    /// How far back to read at start: at least the longest feature window (61 bars of the
    /// symbol: across a night or a weekend), and the retained history.
    #[serde(with = "humantime_serde")]
    pub backfill: Duration,
    /// librdkafka settings passed through (security, timeouts).
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaFeedConfig {
    fn default() -> Self {
        KafkaFeedConfig {
            brokers: String::new(),
            topic: "market.bars.1m".into(),
            backfill: Duration::from_secs(7 * 24 * 3600),
            client: BTreeMap::new(),
        }
    }
}

/// What the consumer reports to readiness and metrics.
#[derive(Debug, Default)]
pub struct FeedState {
    /// The backfill reached the end offsets seen at start.
    pub caught_up: AtomicBool,
    /// Records behind the partitions' end offsets, at the last check.
    pub lag: AtomicI64,
    /// Records read (bars, good or bad).
    pub records: AtomicI64,
    /// The broker is failing (logged once when it starts, once when it ends).
    pub failing: AtomicBool,
}

/// The consumer thread; stopped when dropped.
pub struct KafkaFeed {
    pub state: Arc<FeedState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KafkaFeed {
    /// Start consuming `config.topic` into `live`; the thread first calls `on_start` with its
    /// name (to set its priority).
    pub fn start(
        config: KafkaFeedConfig,
        live: Arc<LiveFeatures>,
        on_start: fn(&str),
    ) -> std::io::Result<KafkaFeed> {
        let state = Arc::new(FeedState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("market-feed".into())
            .spawn(move || {
                on_start("market-feed");
                consume(&config, &live, &s, &st)
            })?;
        Ok(KafkaFeed {
            state,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for KafkaFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where each partition is read next.
type Positions = BTreeMap<i32, i64>;

/// What the consumer thread works with.
#[derive(Clone, Copy)]
struct Feed<'a> {
    config: &'a KafkaFeedConfig,
    live: &'a LiveFeatures,
    state: &'a FeedState,
    stop: &'a AtomicBool,
}

/// Connect, seek, backfill, follow; retried while the broker is unreachable. After a broker
/// outage the consumer is rebuilt at the positions it had reached (a consumer kept across a
/// broker restart can stay stuck: seen with tansu).
fn consume(config: &KafkaFeedConfig, live: &LiveFeatures, state: &FeedState, stop: &AtomicBool) {
    let mut logged = false;
    let mut resume: Option<Positions> = None;
    while !stop.load(Ordering::SeqCst) {
        let built = match &resume {
            None => assigned(config),
            Some(at) => reassigned(config, at),
        };
        match built {
            Ok((consumer, behind, at)) => {
                logged = false;
                let feed = Feed {
                    config,
                    live,
                    state,
                    stop,
                };
                match follow(&consumer, &feed, behind, at) {
                    Some(at) => {
                        tracing::debug!(topic = %config.topic, "market data feed: rebuilding the consumer");
                        resume = Some(at);
                    }
                    None => return,
                }
            }
            Err(e) => {
                if !logged {
                    tracing::warn!(error = %e, topic = %config.topic, "market data feed: cannot reach the topic yet; retrying");
                    logged = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// A consumer of `config`'s settings (no group: partitions are assigned).
pub(super) fn consumer(
    config: &KafkaFeedConfig,
) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set(
            "group.id",
            format!("tradeserve-feed-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in &config.client {
        c.set(k, v);
    }
    c.create()
}

/// A consumer assigned every partition of the topic at `now - backfill`; the end offset of
/// each partition the backfill must still read up to; where each partition starts.
fn assigned(
    config: &KafkaFeedConfig,
) -> Result<(BaseConsumer, Positions, Positions), rdkafka::error::KafkaError> {
    let consumer = consumer(config)?;
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(&config.topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == config.topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    let since = time::OffsetDateTime::now_utc() - config.backfill;
    let since_ms = (since.unix_timestamp_nanos() / 1_000_000) as i64;
    let mut wanted = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in &partitions {
        wanted.add_partition_offset(&config.topic, *p, Offset::Offset(since_ms))?;
        let (_, high) = consumer.fetch_watermarks(&config.topic, *p, timeout)?;
        ends.insert(*p, high);
    }
    let start = match consumer.offsets_for_times(wanted, timeout) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "market data feed: the broker cannot seek by time; reading the topic from its beginning");
            let mut all = TopicPartitionList::new();
            for p in &partitions {
                all.add_partition_offset(&config.topic, *p, Offset::Beginning)?;
            }
            all
        }
    };
    consumer.assign(&start)?;
    let mut behind = Positions::new();
    let mut at = Positions::new();
    for e in start.elements() {
        let end = ends.get(&e.partition()).copied().unwrap_or(0);
        let from = match e.offset() {
            Offset::Offset(n) => n,
            Offset::Beginning => 0,
            _ => end,
        };
        at.insert(e.partition(), from);
        if from < end {
            behind.insert(e.partition(), end);
        }
    }
    Ok((consumer, behind, at))
}

/// A fresh consumer at `at` (caught up already: nothing to wait for).
fn reassigned(
    config: &KafkaFeedConfig,
    at: &Positions,
) -> Result<(BaseConsumer, Positions, Positions), rdkafka::error::KafkaError> {
    let consumer = consumer(config)?;
    let mut list = TopicPartitionList::new();
    for (p, offset) in at {
        list.add_partition_offset(&config.topic, *p, Offset::Offset(*offset))?;
    }
    consumer.assign(&list)?;
    Ok((consumer, Positions::new(), at.clone()))
}

/// Read until stopped (`None`), or until the broker has failed for a while (`Some`: where to
/// resume). Every record goes into `live`; caught up once every partition in `behind`
/// reached its end offset.
fn follow(
    consumer: &BaseConsumer,
    feed: &Feed<'_>,
    mut behind: Positions,
    mut at: Positions,
) -> Option<Positions> {
    let Feed {
        config,
        live,
        state,
        stop,
    } = *feed;
    let started = Instant::now();
    let mut last_lag = Instant::now();
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if behind.is_empty() && !state.caught_up.swap(true, Ordering::SeqCst) {
            tracing::info!(topic = %config.topic, records = state.records.load(Ordering::Relaxed), ms = started.elapsed().as_secs_f64() * 1e3, "market data feed caught up");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                failing_since = None;
                if state.failing.swap(false, Ordering::SeqCst) {
                    tracing::info!(topic = %config.topic, "market data feed: receiving bars again");
                }
                state.records.fetch_add(1, Ordering::Relaxed);
                let _ = live.ingest_json(m.payload().unwrap_or_default());
                at.insert(m.partition(), m.offset() + 1);
                if behind
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    behind.remove(&m.partition());
                }
            }
            Some(Err(e)) if failing_since.is_none() => {
                if !state.failing.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "market data feed: consumer error; bars may go stale until the broker is back");
                }
                failing_since = Some(Instant::now());
            }
            Some(Err(_)) | None => {}
        }
        if failing_since.is_some_and(|t| t.elapsed() >= RECONNECT_AFTER) {
            return Some(at);
        }
        if last_lag.elapsed() >= Duration::from_secs(2) {
            last_lag = Instant::now();
            state
                .lag
                .store(lag(consumer, config, &at), Ordering::Relaxed);
        }
    }
    None
}

/// How long the consumer may fail before it is rebuilt.
const RECONNECT_AFTER: Duration = Duration::from_secs(3);

/// Records between what was read and each partition's end.
fn lag(consumer: &BaseConsumer, config: &KafkaFeedConfig, positions: &BTreeMap<i32, i64>) -> i64 {
    positions
        .iter()
        .filter_map(|(p, at)| {
            let (_, high) = consumer
                .fetch_watermarks(&config.topic, *p, Duration::from_millis(500))
                .ok()?;
            Some((high - at).max(0))
        })
        .sum()
}
