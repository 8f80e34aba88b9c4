//! A Kafka-protocol broker (tansu, SQLite storage) on a free loopback port, and reading a
//! topic back as records.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{HANG, Managed, cache_dir, free_port};

/// A real Kafka-protocol broker: tansu with sqlite storage (survives kill -9 and restart).
pub struct TansuBroker {
    process: Managed,
    pub port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TansuBroker {
    /// The `tansu` executable: `TRADESERVE_TANSU` or the one `scripts/test.sh` builds.
    pub fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("TRADESERVE_TANSU") {
            return PathBuf::from(p);
        }
        cache_dir().join("tansu-0.6.0/bin/tansu")
    }

    /// Start a fresh broker with its storage in a new temporary folder.
    pub fn start() -> TansuBroker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = TansuBroker::start_in(tmp.path(), free_port());
        b._tmp = Some(tmp);
        b
    }

    /// Start (or restart) a broker on `port` with its storage in `dir`.
    pub fn start_in(dir: &Path, port: u16) -> TansuBroker {
        let bin = TansuBroker::binary();
        assert!(
            bin.is_file(),
            "{} not found: run scripts/test.sh, which builds the tansu broker once",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{port}");
        let mut process = Managed::spawn(
            "tansu",
            dir,
            Command::new(&bin)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                // tansu resolves the sqlite path against its working directory (the state dir).
                .args(["--storage-engine", "sqlite://tansu.db"])
                .env("RUST_LOG", "warn"),
        );
        process.wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        TansuBroker {
            process,
            port,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGKILL the broker (its process group) and wait for it.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// One record read back from a topic: its key and its JSON value.
pub struct TopicRecord {
    pub key: Vec<u8>,
    pub event: serde_json::Value,
}

impl TopicRecord {
    pub fn decision_id(&self) -> String {
        self.event["decision_id"]
            .as_str()
            .expect("decision_id")
            .to_owned()
    }
}

/// Read partitions `0..partitions` of `topic` from the beginning (no consumer group join),
/// until `done` says so after a record (or [`HANG`] passes: the records so far).
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    mut done: impl FnMut(&TopicRecord) -> bool,
) -> Vec<TopicRecord> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tradeserve-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    while start.elapsed() < HANG {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let record = TopicRecord {
                key: m.key().unwrap_or_default().to_vec(),
                event: serde_json::from_slice(m.payload().unwrap_or_default())
                    .expect("a JSON event"),
            };
            let stop = done(&record);
            out.push(record);
            if stop {
                break;
            }
        }
    }
    out
}
