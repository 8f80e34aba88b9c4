//! The market data topic read back as a bar history (`tradeserve backtest --kafka-brokers`):
//! every partition from its beginning to the end offset it had when the read began, each record
//! one bar checked as the live feed checks it (a bad one is counted and skipped), the same
//! symbol and bar end twice kept once (the later record wins, as the live feed replaces it),
//! bars after `to` left out. The result is what `load_bars_csv` gives for the CSV the topic was
//! published from.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::Bar;
use super::kafka::{KafkaFeedConfig, consumer};
use crate::SymbolBars;

/// What the read found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicHistory {
    pub bars: BTreeMap<String, SymbolBars>,
    /// Records read, bars kept, records refused (malformed or invalid), repeats replaced.
    pub records: u64,
    pub kept: u64,
    pub rejected: u64,
    pub replaced: u64,
}

/// Why the topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("market data topic {topic}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("market data topic {0} has no partitions (is it created, and the broker reachable?)")]
    NoTopic(String),
    #[error("market data topic {topic}: the read did not reach the end offsets within {after:?}")]
    Incomplete { topic: String, after: Duration },
}

/// Every partition of `topic`, assigned at its beginning, with the end offsets to read up to
/// (`None`: the topic has no partitions).
fn assign(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<BTreeMap<i32, i64>>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut list = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
    {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        list.add_partition_offset(topic, p, Offset::Beginning)?;
        if high > low {
            ends.insert(p, high);
        }
    }
    if list.count() == 0 {
        return Ok(None);
    }
    consumer.assign(&list)?;
    Ok(Some(ends))
}

/// Read the topic of `config` up to its current end, leaving out bars ending after `to` (Unix
/// seconds), giving up after `within`.
pub fn read(
    config: &KafkaFeedConfig,
    to: Option<i64>,
    within: Duration,
) -> Result<TopicHistory, HistoryError> {
    let kafka = |source| HistoryError::Kafka {
        topic: config.topic.clone(),
        source,
    };
    let consumer = consumer(config).map_err(kafka)?;
    let mut pending = assign(&consumer, &config.topic, Duration::from_secs(10))
        .map_err(kafka)?
        .ok_or_else(|| HistoryError::NoTopic(config.topic.clone()))?;
    let mut found: BTreeMap<(String, i64), Bar> = BTreeMap::new();
    let mut h = TopicHistory::default();
    let started = Instant::now();
    while !pending.is_empty() {
        if started.elapsed() > within {
            return Err(HistoryError::Incomplete {
                topic: config.topic.clone(),
                after: within,
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = message.map_err(kafka)?;
        if pending
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            pending.remove(&m.partition());
        }
        h.records += 1;
        let bar = m
            .payload()
            .ok_or(super::Rejection::Malformed)
            .and_then(Bar::from_json)
            .and_then(|b| b.check(None).map(|()| b));
        let Ok(bar) = bar else {
            h.rejected += 1;
            continue;
        };
        let end = bar.end.unix_timestamp();
        if to.is_some_and(|t| end > t) {
            continue;
        }
        if found.insert((bar.symbol.clone(), end), bar).is_some() {
            h.replaced += 1;
        }
    }
    h.kept = found.len() as u64;
    h.bars = by_symbol(found);
    Ok(h)
}

/// Bars keyed by (symbol, end) as each symbol's series, in time order.
fn by_symbol(found: BTreeMap<(String, i64), Bar>) -> BTreeMap<String, SymbolBars> {
    let mut bars: BTreeMap<String, SymbolBars> = BTreeMap::new();
    for ((symbol, end), bar) in found {
        let b = bars.entry(symbol).or_default();
        b.ts.push(end);
        b.high.push(bar.high);
        b.low.push(bar.low);
        b.close.push(bar.close);
        b.volume.push(bar.volume);
    }
    bars
}
