//! `tradeserve market publish`: a bars CSV (`symbol,ts,open,high,low,close,volume,…`, as
//! `data/bars.csv`) into the market data topic, one JSON bar per record keyed by symbol, in
//! time order — on a clock `speed` times faster than real time, at a steady `rate` of bars a
//! second, or as fast as possible. `shift_to_now` moves every bar so that the last one ends now (a demo's
//! decisions are then fresh). The topic is created when missing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tradeserve_events::kafka::{TopicSpec, create_topic};
use tradeserve_features::live::Bar;

/// What to publish, where, how fast.
#[derive(Debug, Clone)]
pub struct Publish {
    pub csv: PathBuf,
    pub brokers: String,
    pub topic: String,
    /// Times real time (60: an hour of bars a minute); 0: as fast as possible.
    pub speed: f64,
    /// Bars a second at a steady pace instead (nights and weekends take no time); 0: off.
    pub rate: f64,
    /// Only these symbols (empty: all).
    pub symbols: BTreeSet<String>,
    pub shift_to_now: bool,
    /// Partitions of the topic when it is created.
    pub partitions: i32,
}

/// What was published.
#[derive(Debug, Serialize)]
pub struct Published {
    pub topic: String,
    pub bars: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_end: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_end: Option<OffsetDateTime>,
    pub seconds: f64,
}

#[derive(Deserialize)]
struct Row {
    symbol: String,
    ts: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

/// The rows of the CSV (only `symbols`, when given), in time order.
fn rows(p: &Publish) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::Reader::from_path(&p.csv)?;
    let mut rows: Vec<Row> = reader
        .deserialize::<Row>()
        .filter(|r| {
            r.as_ref()
                .map(|r| p.symbols.is_empty() || p.symbols.contains(&r.symbol))
                .unwrap_or(true)
        })
        .collect::<Result<_, _>>()?;
    rows.sort_by(|a, b| (a.ts, &a.symbol).cmp(&(b.ts, &b.symbol)));
    Ok(rows)
}

/// Publish; blocking.
pub fn publish(p: &Publish) -> anyhow::Result<Published> {
    let rows = rows(p)?;
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &p.brokers);
    create_topic(
        client.clone(),
        &TopicSpec {
            name: &p.topic,
            partitions: p.partitions,
            replication: 1,
        },
    )?;
    let producer: BaseProducer = client.set("linger.ms", "5").create()?;
    let shift = match (p.shift_to_now, rows.last()) {
        (true, Some(last)) => OffsetDateTime::now_utc().unix_timestamp() - last.ts,
        _ => 0,
    };
    let started = Instant::now();
    let first_ts = rows.first().map(|r| r.ts).unwrap_or(0);
    let mut published = Published {
        topic: p.topic.clone(),
        bars: 0,
        first_end: None,
        last_end: None,
        seconds: 0.0,
    };
    for (i, row) in rows.iter().enumerate() {
        let due = match (p.rate > 0.0, p.speed > 0.0) {
            (true, _) => Some(i as f64 / p.rate),
            (false, true) => Some((row.ts - first_ts) as f64 / p.speed),
            _ => None,
        };
        if let Some(wait) =
            due.and_then(|d| Duration::from_secs_f64(d).checked_sub(started.elapsed()))
        {
            std::thread::sleep(wait);
        }
        let bar = Bar {
            symbol: row.symbol.clone(),
            end: OffsetDateTime::from_unix_timestamp(row.ts + shift)?,
            open: row.open,
            high: row.high,
            low: row.low,
            close: row.close,
            volume: row.volume,
        };
        send(&producer, &p.topic, &bar)?;
        published.first_end.get_or_insert(bar.end);
        published.last_end = Some(bar.end);
        published.bars += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    published.seconds = started.elapsed().as_secs_f64();
    Ok(published)
}

/// One record, waiting for room in the producer's queue when it is full.
fn send(producer: &BaseProducer, topic: &str, bar: &Bar) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(bar)?;
    loop {
        let record = BaseRecord::to(topic).key(&bar.symbol).payload(&payload);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, _))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}
