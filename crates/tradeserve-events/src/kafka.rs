//! The Kafka event sink: every decision to the `trading_decisions` topic, never blocking a
//! request, never losing an event when the broker goes away.
//!
//! `emit` appends the event to the write-ahead log ([`crate::wal`], one `write(2)`, so a crash
//! of the process loses nothing that was answered) and enqueues it (a bounded channel), both
//! under the log's writer lock; without a write-ahead log it only enqueues. One delivery
//! thread owns everything else: the
//! librdkafka producer (idempotent, `acks=all`, compressed, small linger, key = symbol) and the
//! durable [`Spool`]. It runs in one of two modes:
//!
//! - **direct**: events are handed to librdkafka, which batches and retries them;
//! - **spooling**: entered when librdkafka's queue is full, a delivery fails, or all brokers are
//!   down (the not-yet-sent queue is then purged into the spool, in order). Every new event is
//!   appended to the spool behind the older ones. Once a metadata probe reaches the broker, the
//!   spool is replayed in order, in batches committed only after every record of the batch is
//!   acknowledged; when it is empty the sink returns to direct mode.
//!
//! Delivery is at least once: a record can be written twice (a `MessageTimedOut` may have been
//! written; a replayed batch with one failure is replayed whole), so consumers dedupe on
//! `decision_id`. Order per symbol is kept, except that an event whose direct delivery failed is
//! retried from the spool after events that had already been sent. A fatal producer error
//! rebuilds the producer. Shutdown flushes with a deadline and spools whatever is left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};

use parking_lot::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use tradeserve_core::event::Event;
use tradeserve_core::ports::{EmitError, EventSink, Unhealthy};

use crate::audit_log::{AuditLog, AuditLogConfig, LineAt};
use crate::metrics::SinkMetrics;
use crate::spool::{Spool, SpoolConfig, SpoolError};
use crate::wal::{Progress, WalConfig};

/// How often delivery reports are polled while events are in flight.
const BUSY_POLL: Duration = Duration::from_millis(5);
/// The longest sleep of an idle delivery thread (it also notices a dead producer this late).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Settings of the Kafka sink.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
    /// Used when the sink creates the topic.
    pub partitions: i32,
    pub replication: i32,
    /// Passed to librdkafka as is (e.g. `security.protocol`, `sasl.mechanism`, `ssl.ca.location`).
    pub client: BTreeMap<String, String>,
    pub queue_capacity: usize,
    pub spool: SpoolConfig,
    pub linger: Duration,
    pub compression: String,
    /// Longest wait for outstanding deliveries at shutdown; the rest is spooled.
    pub flush_timeout: Duration,
    /// How often a spooling sink checks whether the broker is back.
    pub probe_interval: Duration,
    /// Create the topic at start when it is missing.
    pub create_topic: bool,
    /// The write-ahead log every event is appended to before `emit` returns (`None`: events
    /// wait only in memory until the broker or the spool has them).
    pub wal: Option<WalConfig>,
}

/// Counters of the Kafka sink besides the generic ones.
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    pub sink: SinkMetrics,
    /// The write-ahead log's own counters (label `sink="kafka_wal"`).
    pub wal: SinkMetrics,
    pub delivered: IntCounter,
    pub spooled: IntCounter,
    pub replayed: IntCounter,
    pub delivery_failures: IntCounter,
    pub producer_rebuilds: IntCounter,
    pub spool_backlog: prometheus::IntGauge,
    pub delivery_seconds: Histogram,
}

impl KafkaMetrics {
    /// Unregistered counters, for tests and tools.
    pub fn detached() -> Result<KafkaMetrics, prometheus::Error> {
        Ok(KafkaMetrics {
            sink: SinkMetrics::detached()?,
            wal: SinkMetrics::detached()?,
            delivered: IntCounter::new("delivered", "delivered")?,
            spooled: IntCounter::new("spooled", "spooled")?,
            replayed: IntCounter::new("replayed", "replayed")?,
            delivery_failures: IntCounter::new("delivery_failures", "delivery_failures")?,
            producer_rebuilds: IntCounter::new("producer_rebuilds", "producer_rebuilds")?,
            spool_backlog: prometheus::IntGauge::new("spool_backlog", "spool_backlog")?,
            delivery_seconds: Histogram::with_opts(prometheus::HistogramOpts::new(
                "delivery_seconds",
                "delivery_seconds",
            ))?,
        })
    }
}

/// Why the sink could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    #[error("kafka producer: {0}")]
    Producer(KafkaError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("kafka write-ahead log: {0}")]
    Wal(String),
    #[error("kafka sink thread: {0}")]
    Thread(String),
    #[error("cannot create topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

/// What the sink did over its lifetime, reported at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Acknowledged by the broker, directly or from the spool, by this sink instance.
    pub delivered: u64,
    /// Left in the spool for the next start.
    pub spooled: u64,
}

enum Msg {
    Event(Event),
    /// An event already serialized and in the write-ahead log at `wal`.
    Line {
        key: String,
        line: Vec<u8>,
        wal: LineAt,
    },
    Shutdown(SyncSender<ShutdownReport>),
}

/// Where a produced record came from (and, for a direct one, its write-ahead log line).
enum Origin {
    Direct(Instant, Option<LineAt>),
    Replay,
}

struct Outcome {
    origin: Origin,
    error: Option<KafkaError>,
    key: Vec<u8>,
    payload: Vec<u8>,
}

struct Ctx {
    outcomes: Mutex<Vec<Outcome>>,
    brokers_down: AtomicBool,
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_down.store(true, Ordering::SeqCst);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Box<Origin>) {
        let (error, message) = match result {
            Ok(m) => (None, m),
            Err((e, m)) => (Some(e.clone()), m),
        };
        // Keep the bytes of failed records: they go to the spool.
        let (key, payload) = if error.is_some() {
            (
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let mut outcomes = self.outcomes.lock();
        outcomes.push(Outcome {
            origin: *origin,
            error,
            key,
            payload,
        });
    }
}

type SinkProducer = BaseProducer<Ctx>;

fn client_config(config: &KafkaSinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers);
    for (k, v) in &config.client {
        c.set(k, v);
    }
    c
}

/// Create the topic if it does not exist (an existing topic is left as it is).
fn ensure_topic(config: &KafkaSinkConfig) -> Result<(), KafkaSinkError> {
    let topic = TopicSpec {
        name: &config.topic,
        partitions: config.partitions,
        replication: config.replication,
    };
    create_topic(client_config(config), &topic)
}

/// A topic to create.
pub struct TopicSpec<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub replication: i32,
}

/// Create `topic` through the brokers `client` names, unless it exists (an existing topic is
/// left as it is).
pub fn create_topic(client: ClientConfig, topic: &TopicSpec<'_>) -> Result<(), KafkaSinkError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let topic_err = |reason: String| KafkaSinkError::Topic {
        topic: topic.name.to_owned(),
        reason,
    };
    let admin: AdminClient<DefaultClientContext> =
        client.create().map_err(KafkaSinkError::Producer)?;
    let new = NewTopic::new(
        topic.name,
        topic.partitions,
        TopicReplication::Fixed(topic.replication),
    );
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| topic_err(e.to_string()))?;
    let results = rt
        .block_on(admin.create_topics([&new], &options))
        .map_err(KafkaSinkError::Producer)?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(topic_err(code.to_string())),
        }
    }
    Ok(())
}

fn build_producer(config: &KafkaSinkConfig) -> Result<SinkProducer, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &config.compression)
        .set("linger.ms", config.linger.as_millis().to_string())
        // Long on purpose: librdkafka retries within it, and short timeouts with an idempotent
        // producer trip a bug of tansu 0.6, the broker the tests run; outages are handled by
        // the spool instead.
        .set("message.timeout.ms", "300000");
    for (k, v) in &config.client {
        c.set(k, v);
    }
    c.create_with_context(Ctx {
        outcomes: Mutex::new(Vec::new()),
        brokers_down: AtomicBool::new(false),
    })
}

/// The sink handle.
pub struct KafkaSink {
    tx: SyncSender<Msg>,
    metrics: KafkaMetrics,
    refused: AtomicU64,
    worker: Mutex<Option<JoinHandle<()>>>,
    wal: Option<Arc<AuditLog>>,
    /// Events in the channel (the write-ahead path checks room before it writes).
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// Recover the write-ahead log's undelivered lines into `spool`, then open it for appending.
fn open_wal(
    w: &WalConfig,
    spool: &mut Spool,
    metrics: &KafkaMetrics,
) -> Result<Arc<AuditLog>, KafkaSinkError> {
    crate::wal::recover(w, spool).map_err(|e| KafkaSinkError::Wal(e.to_string()))?;
    let log = AuditLog::start(
        AuditLogConfig {
            fsync_interval: w.fsync_interval,
            rotate_bytes: u64::MAX,
            retain_files: 0,
            ..AuditLogConfig::new(w.path.clone())
        },
        metrics.wal.clone(),
    )
    .map_err(|e| KafkaSinkError::Wal(e.to_string()))?;
    Ok(Arc::new(log))
}

impl KafkaSink {
    /// Open the spool, build the producer, start the delivery thread. Events left in the
    /// spool by an earlier process are delivered first.
    pub fn start(
        config: KafkaSinkConfig,
        metrics: KafkaMetrics,
    ) -> Result<KafkaSink, KafkaSinkError> {
        let mut spool = Spool::open(config.spool.clone())?;
        let wal = match &config.wal {
            Some(w) => Some(open_wal(w, &mut spool, &metrics)?),
            None => None,
        };
        metrics.spool_backlog.set(spool.pending() as i64);
        if config.create_topic {
            // A broker outage must not stop the service from starting: events spool until the
            // broker is back, and the topic is created by then or the deliveries say so.
            if let Err(e) = ensure_topic(&config) {
                tracing::warn!(error = %e, topic = %config.topic, "cannot ensure the topic at start");
            }
        }
        let producer = build_producer(&config).map_err(KafkaSinkError::Producer)?;
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = sync_channel(capacity);
        let m = metrics.clone();
        let queued = Arc::new(AtomicUsize::new(0));
        let progress = match (&wal, &config.wal) {
            (Some(log), Some(w)) => Some(Progress::new(Arc::clone(log), w.clone())),
            _ => None,
        };
        let q = Arc::clone(&queued);
        let worker = std::thread::Builder::new()
            .name("kafka-sink".into())
            .spawn(move || {
                Worker::new(
                    config,
                    producer,
                    spool,
                    m,
                    Intake {
                        wal: progress,
                        queued: q,
                    },
                )
                .run(rx)
            })
            .map_err(|e| KafkaSinkError::Thread(e.to_string()))?;
        Ok(KafkaSink {
            tx,
            metrics,
            refused: AtomicU64::new(0),
            worker: Mutex::new(Some(worker)),
            wal,
            queued,
            capacity,
        })
    }

    /// Deliver or spool everything accepted so far, then stop. Blocking.
    pub fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, KafkaSinkError> {
        let (ack_tx, ack_rx) = sync_channel(1);
        self.tx
            .send(Msg::Shutdown(ack_tx))
            .map_err(|_| KafkaSinkError::Thread("already stopped".into()))?;
        let report = ack_rx.recv_timeout(timeout).map_err(|_| {
            KafkaSinkError::Thread(format!("no shutdown report within {timeout:?}"))
        })?;
        if let Some(h) = self.worker.lock().take() {
            h.join()
                .map_err(|_| KafkaSinkError::Thread("delivery thread panicked".into()))?;
        }
        if let Some(wal) = &self.wal {
            wal.shutdown(timeout)
                .map_err(|e| KafkaSinkError::Wal(e.to_string()))?;
        }
        Ok(report)
    }
}

impl KafkaSink {
    fn refused(&self, why: EmitError) -> EmitError {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::error!(refused_total = n, reason = %why, "kafka sink refused a decision event");
        }
        why
    }

    /// Write the event to the write-ahead log, then queue it, under the log's writer lock (so
    /// the delivery thread sees lines in file order). Room in the queue is checked first:
    /// an event is never written that could not be queued.
    fn emit_logged(&self, wal: &AuditLog, event: Event) -> Result<(), EmitError> {
        let room = || {
            if self.queued.load(Ordering::SeqCst) >= self.capacity {
                self.metrics.sink.dropped_queue_full.inc();
                return Err(EmitError::QueueFull);
            }
            Ok(())
        };
        let queue = |at: LineAt, event: Event, line: &[u8]| {
            let msg = Msg::Line {
                key: event.key().to_owned(),
                line: line.to_vec(),
                wal: at,
            };
            self.queued.fetch_add(1, Ordering::SeqCst);
            // Room was checked under the same lock and only the delivery thread takes from
            // the queue, so this cannot find it full; a stopped thread leaves the line in
            // the log for the next start.
            if self.tx.try_send(msg).is_err() {
                self.queued.fetch_sub(1, Ordering::SeqCst);
            }
        };
        match wal.append_event(event, room, queue) {
            Ok(()) => {
                self.metrics.sink.enqueued.inc();
                self.metrics.sink.backlog.inc();
                Ok(())
            }
            Err(e) => Err(self.refused(e)),
        }
    }
}

impl EventSink for KafkaSink {
    fn health(&self) -> Result<(), Unhealthy> {
        self.wal.as_ref().map_or(Ok(()), |w| w.health())
    }

    fn emit(&self, event: Event) -> Result<(), EmitError> {
        if let Some(wal) = &self.wal {
            return self.emit_logged(wal, event);
        }
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => {
                self.metrics.sink.enqueued.inc();
                self.metrics.sink.backlog.inc();
                Ok(())
            }
            Err(e) => {
                let why = match e {
                    TrySendError::Full(_) => {
                        self.metrics.sink.dropped_queue_full.inc();
                        EmitError::QueueFull
                    }
                    TrySendError::Disconnected(_) => {
                        self.metrics.sink.dropped_closed.inc();
                        EmitError::Closed
                    }
                };
                Err(self.refused(why))
            }
        }
    }
}

/// What the delivery thread shares with `emit`: the write-ahead log's progress (when there
/// is one) and the count of queued events.
struct Intake {
    wal: Option<Progress>,
    queued: Arc<AtomicUsize>,
}

struct Worker {
    config: KafkaSinkConfig,
    producer: SinkProducer,
    spool: Spool,
    metrics: KafkaMetrics,
    spooling: bool,
    last_probe: Instant,
    /// Acknowledged deliveries (direct and replayed) by this instance.
    delivered: u64,
    /// The write-ahead log's done lines and checkpoint.
    wal: Option<Progress>,
    queued: Arc<AtomicUsize>,
}

impl Worker {
    fn new(
        config: KafkaSinkConfig,
        producer: SinkProducer,
        spool: Spool,
        metrics: KafkaMetrics,
        intake: Intake,
    ) -> Worker {
        let Intake { wal, queued } = intake;
        let spooling = !spool.is_empty();
        Worker {
            config,
            producer,
            spool,
            metrics,
            spooling,
            last_probe: Instant::now() - Duration::from_secs(3600),
            delivered: 0,
            wal,
            queued,
        }
    }

    /// A write-ahead log line is delivered or durably spooled.
    fn done(&mut self, at: Option<LineAt>) {
        if let (Some(p), Some(at)) = (&mut self.wal, at) {
            p.done(at);
        }
    }

    fn take(&mut self, msg: Msg) -> Option<SyncSender<ShutdownReport>> {
        match msg {
            Msg::Event(e) => self.handle(e),
            Msg::Line { key, line, wal } => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                self.metrics.sink.backlog.dec();
                self.send(key.as_bytes(), &line, Some(wal));
            }
            Msg::Shutdown(ack) => return Some(ack),
        }
        None
    }

    fn run(mut self, rx: Receiver<Msg>) {
        // Warm-up: connect and let the idempotent producer get its id before the first event
        // (otherwise the first delivery takes ~0.5 s). Events arriving meanwhile wait in the
        // channel; nothing on the request path waits for this.
        if let Err(e) = self
            .producer
            .client()
            .fetch_metadata(Some(&self.config.topic), Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "kafka broker not reachable at start; events will spool");
        }
        loop {
            // Delivery reports are polled every 5 ms while anything is in flight; with nothing
            // to settle, spool or checkpoint the thread sleeps until an event arrives (an idle
            // replica costs nothing; an event wakes it at once).
            let wait = if self.idle() { IDLE_WAIT } else { BUSY_POLL };
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    if let Some(ack) = self.take(msg) {
                        return self.stop(ack);
                    }
                    // Take whatever else is waiting as one batch.
                    while let Ok(msg) = rx.try_recv() {
                        if let Some(ack) = self.take(msg) {
                            return self.stop(ack);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let (tx, _rx) = sync_channel(1);
                    return self.stop(tx);
                }
            }
            self.producer.poll(Duration::ZERO);
            self.settle_direct();
            self.check_health();
            if self.spooling && self.last_probe.elapsed() >= self.config.probe_interval {
                self.last_probe = Instant::now();
                self.try_replay();
            }
            self.sync_spool();
            if let Some(p) = &mut self.wal {
                p.checkpoint(false);
            }
        }
    }

    /// Nothing in flight, nothing spooled to replay, no fsync or checkpoint pending.
    fn idle(&self) -> bool {
        !self.spooling
            && self.producer.in_flight_count() == 0
            && !self.spool.is_dirty()
            && self.wal.as_ref().is_none_or(|p| p.is_saved())
    }

    fn handle(&mut self, event: Event) {
        self.metrics.sink.backlog.dec();
        let payload = match serde_json::to_vec(&event) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.sink.write_errors.inc();
                tracing::error!(error = %e, event_id = %event.id(), "cannot serialize event");
                return;
            }
        };
        self.send(event.key().as_bytes(), &payload, None);
    }

    /// Produce one record, or spool it while spooling; `wal` is its write-ahead log line.
    fn send(&mut self, key: &[u8], payload: &[u8], wal: Option<LineAt>) {
        if self.spooling {
            self.spool_event(key, payload, wal);
            return;
        }
        let record = BaseRecord::with_opaque_to(
            &self.config.topic,
            Box::new(Origin::Direct(Instant::now(), wal.clone())),
        )
        .key(key)
        .payload(payload);
        if let Err((e, _)) = self.producer.send(record) {
            tracing::warn!(error = %e, "kafka producer queue refused an event; spooling");
            self.spooling = true;
            self.spool_event(key, payload, wal);
        }
    }

    fn spool_event(&mut self, key: &[u8], payload: &[u8], wal: Option<LineAt>) {
        match self.spool.append(key, payload) {
            Ok(()) => {
                self.metrics.spooled.inc();
                self.metrics.spool_backlog.set(self.spool.pending() as i64);
                self.done(wal);
            }
            Err(e) => {
                self.metrics.sink.write_errors.inc();
                if self.wal.is_some() {
                    // Still in the write-ahead log: delivered after the next start.
                    tracing::error!(error = %e, "spool append failed: the event stays in the write-ahead log");
                } else {
                    // Without a write-ahead log, the one way to lose an event. Counted and logged.
                    tracing::error!(error = %e, "spool append failed: decision event lost");
                }
            }
        }
    }

    fn sync_spool(&mut self) {
        if let Err(e) = self.spool.sync() {
            self.metrics.sink.write_errors.inc();
            tracing::error!(error = %e, "spool fsync failed");
        }
    }

    fn take_outcomes(&self) -> Vec<Outcome> {
        std::mem::take(&mut *self.producer.context().outcomes.lock())
    }

    /// Account for finished direct deliveries; failed ones go to the spool.
    fn settle_direct(&mut self) {
        for o in self.take_outcomes() {
            match (o.origin, o.error) {
                (Origin::Direct(sent, wal), None) => {
                    self.delivered += 1;
                    self.metrics.delivered.inc();
                    self.metrics.sink.written.inc();
                    self.metrics
                        .delivery_seconds
                        .observe(sent.elapsed().as_secs_f64());
                    self.done(wal);
                }
                (Origin::Direct(_, wal), Some(e)) => {
                    self.metrics.delivery_failures.inc();
                    if !self.spooling {
                        tracing::warn!(error = %e, "kafka delivery failed; spooling until the broker is back");
                    }
                    self.spooling = true;
                    self.spool_event(&o.key, &o.payload, wal);
                }
                // Replay outcomes are consumed by `try_replay` itself.
                (Origin::Replay, _) => {}
            }
        }
    }

    fn check_health(&mut self) {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::error!(
                ?code,
                reason,
                "fatal kafka producer error: rebuilding the producer"
            );
            self.spool_outstanding_and_rebuild();
        }
        if self
            .producer
            .context()
            .brokers_down
            .swap(false, Ordering::SeqCst)
        {
            tracing::warn!("all kafka brokers are down: spooling until they are back");
            self.spool_outstanding_and_rebuild();
        }
    }

    /// Move everything librdkafka still holds (queued and in flight) to the spool, in order,
    /// and start a fresh producer. A fresh producer id matters: purging an idempotent
    /// producer's messages forces an epoch bump on the same id, which at least one broker
    /// (tansu 0.6, the broker the tests run) cannot handle. Purged in-flight messages may have been
    /// written already; the spool delivers them again and consumers dedupe on decision_id.
    fn spool_outstanding_and_rebuild(&mut self) {
        self.spooling = true;
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        self.producer.poll(Duration::from_millis(100));
        self.settle_direct();
        match build_producer(&self.config) {
            Ok(p) => {
                self.producer = p;
                self.metrics.producer_rebuilds.inc();
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the kafka producer; keeping the old one")
            }
        }
    }

    /// The broker answers metadata again: send spooled records, oldest first.
    fn try_replay(&mut self) {
        if self
            .producer
            .client()
            .fetch_metadata(Some(&self.config.topic), Duration::from_secs(1))
            .is_err()
        {
            return;
        }
        // Direct sends still in flight finish first, so nothing overtakes the spool.
        if self.producer.flush(Duration::from_secs(5)).is_err() {
            return;
        }
        self.settle_direct();
        loop {
            let batch = match self.spool.read_batch(500) {
                Ok(b) => b,
                Err(e) => {
                    self.metrics.sink.write_errors.inc();
                    tracing::error!(error = %e, "spool unreadable: replay stopped");
                    return;
                }
            };
            let Some(last) = batch.last().map(|r| r.end) else {
                self.spooling = false;
                tracing::info!("spool drained; delivering directly again");
                return;
            };
            for r in &batch {
                let record =
                    BaseRecord::with_opaque_to(&self.config.topic, Box::new(Origin::Replay))
                        .key(&r.key)
                        .payload(&r.value);
                if self.producer.send(record).is_err() {
                    break;
                }
            }
            if self.producer.flush(Duration::from_secs(10)).is_err() {
                return;
            }
            let mut ok = 0u64;
            let mut failed = false;
            for o in self.take_outcomes() {
                match (o.origin, o.error) {
                    (Origin::Replay, None) => ok += 1,
                    (Origin::Replay, Some(_)) => failed = true,
                    (Origin::Direct(..), _) => {}
                }
            }
            if failed || ok != batch.len() as u64 {
                // Replay the whole batch again later; duplicates are deduped downstream.
                return;
            }
            if let Err(e) = self.spool.commit(last, ok) {
                tracing::error!(error = %e, "spool commit failed");
                return;
            }
            self.delivered += ok;
            self.metrics.replayed.inc_by(ok);
            self.metrics.sink.written.inc_by(ok);
            self.metrics.spool_backlog.set(self.spool.pending() as i64);
        }
    }

    fn stop(mut self, ack: SyncSender<ShutdownReport>) {
        if !self.spooling {
            let _ = self.producer.flush(self.config.flush_timeout);
        }
        // Whatever is still in librdkafka goes to the spool (failure callbacks).
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        self.producer.poll(Duration::from_millis(100));
        self.settle_direct();
        self.sync_spool();
        if let Some(p) = &mut self.wal {
            p.checkpoint(true);
        }
        let report = ShutdownReport {
            delivered: self.delivered,
            spooled: self.spool.pending(),
        };
        tracing::info!(
            delivered = report.delivered,
            spooled = report.spooled,
            "kafka sink stopped"
        );
        let _ = ack.send(report);
    }
}
