//! The live feed from a real Kafka-protocol broker (tansu, started on a free loopback port):
//! bars published by `tradeserve market publish` are read by every replica in full (no
//! consumer group); a replica is not ready until its backfill caught up; decisions at bar
//! times equal the replay's; two replicas answer identically; bad records in the topic are
//! counted and skipped, the consumer going on; a broker outage lets fresh symbols go stale
//! (503 `stale_features`) until bars flow again.
//!
//! Ignored by plain `cargo test`; `scripts/test.sh` builds tansu and runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tradeserve_testkit::{HANG, ServiceProcess, TansuBroker};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
const TOPIC: &str = "market.bars.1m";

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .display()
        .to_string()
}

fn envs(dir: &Path, brokers: Option<&str>) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (
            "TRADESERVE_EVENTS__AUDIT_LOG",
            dir.join("audit.jsonl").display().to_string(),
        ),
        (
            "TRADESERVE_CONTROL__FILE",
            dir.join("control.json").display().to_string(),
        ),
        ("TRADESERVE_FEATURES__BARS", repo("data/bars.csv")),
        ("TRADESERVE_MODELS__DIR", repo("models")),
    ];
    if let Some(b) = brokers {
        v.extend([
            ("TRADESERVE_FEATURES__SOURCE", "live".to_owned()),
            ("TRADESERVE_FEATURES__LIVE__KAFKA__BROKERS", b.to_owned()),
            ("TRADESERVE_FEATURES__LIVE__MAX_BAR_AGE", "3s".to_owned()),
        ]);
    }
    v
}

/// `tradeserve market publish` of `symbols`, as fast as possible; the report.
fn publish(brokers: &str, symbols: &str, shift_to_now: bool) -> Value {
    let mut c = Command::new(BIN);
    c.args([
        "market",
        "publish",
        "--csv",
        &repo("data/bars.csv"),
        "--brokers",
        brokers,
    ])
    .args(["--topic", TOPIC, "--speed", "0", "--symbols", symbols]);
    if shift_to_now {
        c.arg("--shift-to-now");
    }
    let out = tradeserve_testkit::run_ok(&mut c);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Raw records into the topic (bad ones included), keyed by symbol.
fn produce(brokers: &str, records: &[(&str, &str)]) {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for (key, payload) in records {
        p.send(BaseRecord::to(TOPIC).key(*key).payload(*payload))
            .unwrap();
    }
    p.flush(HANG).unwrap();
}

async fn get(client: &reqwest::Client, s: &ServiceProcess, path: &str) -> (u16, Value) {
    let r = client
        .get(format!("{}{path}", s.url()))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    tradeserve_testkit::openapi::assert_documented("GET", path, status, &bytes);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn decide(client: &reqwest::Client, s: &ServiceProcess, body: &Value) -> (u16, Value) {
    let r = client
        .post(format!("{}/api/v1/predict", s.url()))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    tradeserve_testkit::openapi::assert_documented("POST", "/api/v1/predict", status, &bytes);
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The service's log lines about the feed and the Kafka client so far (for a failure).
fn feed_logs(s: &ServiceProcess) -> String {
    s.logs
        .try_iter()
        .filter(|l| {
            let t = l["target"].as_str().unwrap_or_default();
            t.contains("feed") || t.contains("rdkafka")
        })
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn wait_ready(client: &reqwest::Client, s: &ServiceProcess) {
    let until = Instant::now() + HANG;
    loop {
        let (status, v) = get(client, s, "/health/ready").await;
        if status == 200 {
            return;
        }
        assert!(Instant::now() < until, "never ready: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the tansu broker (scripts/test.sh builds it)"]
async fn replicas_read_the_whole_topic_and_decide_as_the_replay() {
    let broker = TansuBroker::start();
    let brokers = broker.bootstrap();
    let report = publish(&brokers, "AAPL,MSFT", false);
    let published = report["bars"].as_u64().unwrap();
    assert!(published > 9_000, "{report}");
    produce(
        &brokers,
        &[
            ("AAPL", "{not json"),
            (
                "MSFT",
                r#"{"symbol":"MSFT","end":"2025-10-14T15:00:30Z","open":-1,"high":1,"low":0.5,"close":0.7,"volume":1}"#,
            ),
        ],
    );

    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let one = ServiceProcess::start(BIN, &envs(a.path(), Some(&brokers)));
    let two = ServiceProcess::start(BIN, &envs(b.path(), Some(&brokers)));
    let replay = ServiceProcess::start(BIN, &envs(c.path(), None));
    let client = reqwest::Client::new();
    wait_ready(&client, &one).await;
    wait_ready(&client, &two).await;

    // Times across each symbol's retained history (the live source keeps 1,950 bars).
    let (_, symbols) = get(&client, &one, "/api/v1/symbols").await;
    let mut compared = 0;
    for symbol in ["AAPL", "MSFT"] {
        let held = symbols["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["symbol"] == symbol)
            .unwrap();
        assert_eq!(held["bars"], 1950, "{held}");
        let rfc = &time::format_description::well_known::Rfc3339;
        let from = time::OffsetDateTime::parse(held["from"].as_str().unwrap(), rfc).unwrap();
        let to = time::OffsetDateTime::parse(held["to"].as_str().unwrap(), rfc).unwrap();
        let mut at = from;
        while at <= to {
            let body = json!({"symbol": symbol, "timestamp": at.format(rfc).unwrap(), "risk_check": false});
            let (s0, want) = decide(&client, &replay, &body).await;
            let (s1, got) = decide(&client, &one, &body).await;
            let (s2, also) = decide(&client, &two, &body).await;
            assert_eq!((s0, s1, s2), (200, 200, 200), "{at}: {want} {got} {also}");
            for field in ["action", "confidence", "recommended_quantity"] {
                assert_eq!(got[field], want[field], "{symbol} {at} {field}");
                assert_eq!(
                    also[field], got[field],
                    "{symbol} {at} {field}: replicas differ"
                );
            }
            assert_eq!(
                got["metadata"]["features_as_of"],
                want["metadata"]["features_as_of"]
            );
            compared += 1;
            at += time::Duration::minutes(97);
        }
    }
    assert!(compared >= 30);

    // The two bad records were counted under their reasons; everything else applied.
    let (_, text) = {
        let r = client
            .get(format!("{}/metrics", one.url()))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    for series in [
        format!("tradeserve_bars_total{{result=\"applied\"}} {published}"),
        "tradeserve_bars_total{result=\"malformed\"} 1".to_owned(),
        "tradeserve_bars_total{result=\"non_positive_price\"} 1".to_owned(),
    ] {
        assert!(text.contains(&series), "{series} not in /metrics");
    }

    // Fresh bars (shifted to end now) serve; with the broker gone they go stale after
    // max_bar_age (3 s), and serve again once the broker is back and bars flow.
    let mut broker = broker;
    publish(&brokers, "SPY", true);
    let mut published = Instant::now();
    let latest = json!({"symbol": "SPY", "risk_check": false});
    let until = Instant::now() + HANG;
    loop {
        let (s, v) = decide(&client, &one, &latest).await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < until, "fresh SPY bars never served: {v}");
        // On a busy machine the replica may read the day of bars more slowly than its last
        // bar ages past max_bar_age (3 s): publish them again, shifted to the new now.
        if published.elapsed() > Duration::from_secs(10) {
            publish(&brokers, "SPY", true);
            published = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let port: u16 = brokers.rsplit(':').next().unwrap().parse().unwrap();
    let dir = broker.dir().to_path_buf();
    broker.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (s, v) = decide(&client, &one, &latest).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "stale_features", "{v}");
    let _broker = TansuBroker::start_in(&dir, port);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let bar = json!({"symbol": "SPY", "end": now, "open": 500.0, "high": 500.5, "low": 499.5,
        "close": 500.2, "volume": 1000.0})
    .to_string();
    produce(&brokers, &[("SPY", bar.as_str())]);
    let until = Instant::now() + HANG;
    loop {
        let (s, v) = decide(&client, &one, &latest).await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < until,
            "decisions did not resume after the outage: {v}\n{}",
            feed_logs(&one)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` bundled bars of `symbol` from `from`, as topic records.
fn bars_of(symbol: &str, from: usize, n: usize) -> Vec<String> {
    let all = tradeserve_features::load_bars_csv(Path::new(&repo("data/bars.csv"))).unwrap();
    let b = &all[symbol];
    let rfc = &time::format_description::well_known::Rfc3339;
    (from..(from + n).min(b.len()))
        .map(|i| {
            let end = time::OffsetDateTime::from_unix_timestamp(b.ts[i]).unwrap();
            json!({"symbol": symbol, "end": end.format(rfc).unwrap(), "open": b.close[i],
                "high": b.high[i], "low": b.low[i], "close": b.close[i], "volume": b.volume[i]})
            .to_string()
        })
        .collect()
}

/// A replica stopped mid-stream and started again backfills to the same state as one that
/// never stopped: the same answers at every checked time, its newest bar included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the tansu broker (scripts/test.sh builds it)"]
async fn a_replica_restarted_mid_stream_decides_as_one_that_never_stopped() {
    let broker = TansuBroker::start();
    let brokers = broker.bootstrap();
    // The topic exists before the first bar (publish creates it: here, with no rows).
    publish(&brokers, "NONE", false);
    let records = bars_of("NVDA", 0, 3_000);
    let send = |range: std::ops::Range<usize>| {
        let batch: Vec<(&str, &str)> = records[range]
            .iter()
            .map(|r| ("NVDA", r.as_str()))
            .collect();
        produce(&brokers, &batch);
    };
    send(0..1_500);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let steady = ServiceProcess::start(BIN, &envs(a.path(), Some(&brokers)));
    let restarted = ServiceProcess::start(BIN, &envs(b.path(), Some(&brokers)));
    let client = reqwest::Client::new();
    wait_ready(&client, &steady).await;
    wait_ready(&client, &restarted).await;
    drop(restarted);
    send(1_500..3_000);
    let restarted = ServiceProcess::start(BIN, &envs(b.path(), Some(&brokers)));
    wait_ready(&client, &restarted).await;
    // The steady replica has read the second half too.
    let until = Instant::now() + HANG;
    loop {
        let (_, s) = get(&client, &steady, "/api/v1/symbols").await;
        let (_, r) = get(&client, &restarted, "/api/v1/symbols").await;
        if s["symbols"][0]["newest_bar"] == r["symbols"][0]["newest_bar"] {
            assert_eq!(s["symbols"][0]["bars"], r["symbols"][0]["bars"]);
            break;
        }
        assert!(Instant::now() < until, "{s} vs {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rfc = &time::format_description::well_known::Rfc3339;
    let (_, r) = get(&client, &restarted, "/api/v1/symbols").await;
    let held = &r["symbols"][0];
    let from = time::OffsetDateTime::parse(held["from"].as_str().unwrap(), rfc).unwrap();
    let to = time::OffsetDateTime::parse(held["to"].as_str().unwrap(), rfc).unwrap();
    let mut at = from;
    let mut compared = 0;
    while at <= to + time::Duration::minutes(1) {
        let body =
            json!({"symbol": "NVDA", "timestamp": at.format(rfc).unwrap(), "risk_check": false});
        let (s1, one) = decide(&client, &steady, &body).await;
        let (s2, two) = decide(&client, &restarted, &body).await;
        assert_eq!((s1, s2), (200, 200), "{one} {two}");
        for field in ["action", "confidence", "recommended_quantity"] {
            assert_eq!(one[field], two[field], "{at} {field}");
        }
        compared += 1;
        at += time::Duration::minutes(61);
    }
    assert!(compared >= 20, "{compared}");
}
