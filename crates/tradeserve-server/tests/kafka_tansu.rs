//! Decision events against a real Kafka-protocol broker (tansu, sqlite storage), started by
//! the test harness on a free loopback port: end to end (REST and gRPC decisions alike), the
//! broker killed and restarted under load, and a service restarted during an outage.
//!
//! Ignored by plain `cargo test`; `scripts/test.sh` builds tansu once (cached) and runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tradeserve_features::ReplayClock;
use tradeserve_replay::{ModelStore, Replayer, replay_kafka};
use tradeserve_server::app::router;
use tradeserve_server::config::{Config, SinkKind};
use tradeserve_server::serve::{Service, build_with_clock};
use tradeserve_server::state::AppState;
use tradeserve_testkit::{HANG, TansuBroker, event_schema, read_topic, wait_for};

const TOPIC: &str = "trading_decisions";

fn config(brokers: &str, dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    // Kafka and the audit log: this replica's risk books are rebuilt from the log at a restart
    // (Kafka alone needs the shared ledger).
    c.events.sink = SinkKind::Both;
    c.events.audit_log = dir.join("audit.jsonl");
    c.events.kafka.brokers = brokers.to_owned();
    c.events.kafka.partitions = 3;
    c.events.kafka.spool_dir = dir.join("spool");
    c.events.kafka.probe_interval = Duration::from_millis(500);
    c.control.file = dir.join("control.json");
    c.server.request_deadline = tradeserve_core::bounded::PositiveDuration::new(HANG).unwrap();
    c
}

async fn service(config: &Config) -> Service {
    let c = config.clone();
    tokio::task::spawn_blocking(move || build_with_clock(&c, ReplayClock::Fixed(500)))
        .await
        .unwrap()
        .unwrap()
}

async fn decide(state: &Arc<AppState>, i: usize) -> String {
    let symbols = ["AAPL", "MSFT", "NVDA", "BRK.B", "SPY"];
    let body = format!(
        r#"{{"symbol":"{}","risk_check":{}}}"#,
        symbols[i % 5],
        i.is_multiple_of(2)
    );
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/predict")
        .body(Body::from(body))
        .unwrap();
    let res = router(Arc::clone(state)).oneshot(req).await.unwrap();
    assert!(
        res.status() == StatusCode::OK || res.status() == StatusCode::FORBIDDEN,
        "{}",
        res.status()
    );
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    tradeserve_testkit::openapi::assert_documented("POST", "/api/v1/predict", status, &bytes);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["decision_id"].as_str().unwrap().to_owned()
}

/// [`decide`] over gRPC (`tradeserve.v1.Decisions/Predict`, the service itself).
async fn decide_grpc(state: &Arc<AppState>, i: usize) -> String {
    let symbols = ["AAPL", "MSFT", "NVDA", "BRK.B", "SPY"];
    let request = tradeserve_grpc::tradeserve::v1::PredictRequest {
        symbol: symbols[i % 5].into(),
        risk_check: Some(i.is_multiple_of(2)),
        ..Default::default()
    };
    let arrival = tradeserve_server::routes::admit::Arrival::now();
    let d =
        tradeserve_server::grpc::decisions::decide(state, tonic::Request::new(request), arrival)
            .await
            .unwrap();
    d.decision_id
}

async fn stop(service: &Service) -> (u64, u64) {
    let kafka = service.kafka.clone().unwrap();
    let r = tokio::task::spawn_blocking(move || kafka.shutdown(HANG))
        .await
        .unwrap()
        .unwrap();
    (r.delivered, r.spooled)
}

/// Every decision id on the topic (reads until `want` are all seen, or a hang), and checks
/// each event against the published schema.
fn topic_ids(brokers: &str, want: &BTreeSet<String>) -> BTreeSet<String> {
    let validator = event_schema();
    let mut seen = BTreeSet::new();
    let records = read_topic(brokers, TOPIC, 3, |r| {
        seen.insert(r.decision_id());
        want.is_subset(&seen)
    });
    for r in &records {
        assert!(
            validator.is_valid(&r.event),
            "event does not match the schema: {}",
            r.event
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the tansu broker: run scripts/test.sh"]
async fn decisions_reach_a_real_broker_and_replay_with_zero_mismatches() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&config(&broker.bootstrap(), dir.path())).await;
    let mut returned = BTreeSet::new();
    // A third of them over gRPC: the same events, replayed alike.
    for i in 0..300 {
        let id = match i % 3 {
            0 => decide_grpc(&svc.state, i).await,
            _ => decide(&svc.state, i).await,
        };
        returned.insert(id);
    }
    let (delivered, spooled) = stop(&svc).await;
    assert_eq!((delivered, spooled), (300, 0));
    let brokers = broker.bootstrap();
    let want = returned.clone();
    let seen = tokio::task::spawn_blocking(move || topic_ids(&brokers, &want))
        .await
        .unwrap();
    assert_eq!(seen, returned);

    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let brokers = broker.bootstrap();
    let report = tokio::task::spawn_blocking(move || {
        let mut r = Replayer::new(ModelStore::Bundled(models), Config::default().sizing);
        replay_kafka(&brokers, TOPIC, &Default::default(), &mut r).unwrap();
        r.finish()
    })
    .await
    .unwrap();
    assert_eq!(
        (report.events, report.matched, report.mismatched),
        (300, 300, 0),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the tansu broker: run scripts/test.sh"]
async fn no_decision_is_lost_when_the_broker_is_killed_and_restarted_under_load() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,librdkafka=warn")
        .with_test_writer()
        .try_init();
    let keep = std::env::var("FAULT_DIR").ok();
    let mut broker = match &keep {
        Some(d) => {
            std::fs::create_dir_all(d).unwrap();
            TansuBroker::start_in(std::path::Path::new(d), tradeserve_testkit::free_port())
        }
        None => TansuBroker::start(),
    };
    let (port, broker_dir) = (broker.port, broker.dir().to_path_buf());
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&config(&broker.bootstrap(), dir.path())).await;
    // Open loop at 200 decisions/s for 30 s; kill -9 the broker at 10 s, restart it at 20 s.
    let rate: f64 = std::env::var("FAULT_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200.0);
    let total = (rate * 30.0) as usize;
    let start = Instant::now();
    let mut returned = BTreeSet::new();
    let mut killed = false;
    let mut restarted = None;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if !killed && start.elapsed() >= Duration::from_secs(10) {
            broker.kill();
            killed = true;
        }
        if killed && restarted.is_none() && start.elapsed() >= Duration::from_secs(20) {
            restarted = Some(TansuBroker::start_in(&broker_dir, port));
        }
        returned.insert(decide(&svc.state, i).await);
    }
    assert!(restarted.is_some());
    let metrics = &svc.state.metrics.kafka;
    let deadline = Instant::now() + HANG;
    while metrics.spool_backlog.get() > 0 || metrics.sink.backlog.get() > 0 {
        assert!(
            Instant::now() < deadline,
            "spool not drained: {} left",
            metrics.spool_backlog.get()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, spooled_at_stop) = stop(&svc).await;
    let brokers = format!("127.0.0.1:{port}");
    let want = returned.clone();
    let seen = tokio::task::spawn_blocking(move || topic_ids(&brokers, &want))
        .await
        .unwrap();
    let missing = returned.difference(&seen).count();
    println!(
        "fault test: sent {total}, acknowledged to clients {}, found in the topic {}, missing {missing}; \
         delivered {} directly, {} via the spool ({} spooled), {} left spooled at stop",
        returned.len(),
        seen.intersection(&returned).count(),
        metrics.delivered.get(),
        metrics.replayed.get(),
        metrics.spooled.get(),
        spooled_at_stop,
    );
    assert_eq!(returned.len(), total);
    assert_eq!(
        missing, 0,
        "decisions returned to clients but not on the topic"
    );
    assert!(
        metrics.spooled.get() > 0,
        "the outage should have sent events through the spool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the tansu broker: run scripts/test.sh"]
async fn a_service_restarted_during_an_outage_replays_its_spool() {
    let mut broker = TansuBroker::start();
    let (port, broker_dir) = (broker.port, broker.dir().to_path_buf());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&broker.bootstrap(), dir.path());
    // Let the first service create the topic, then take the broker away.
    let svc = service(&cfg).await;
    let mut returned = BTreeSet::new();
    returned.insert(decide(&svc.state, 0).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.kill();
    for i in 1..200 {
        returned.insert(decide(&svc.state, i).await);
    }
    let (_, spooled) = stop(&svc).await;
    assert!(spooled > 0, "events were spooled during the outage");
    drop(svc);
    // A new process (same spool folder) starts while the broker is still down, then it returns.
    let svc = service(&cfg).await;
    let _broker = TansuBroker::start_in(&broker_dir, port);
    let metrics = &svc.state.metrics.kafka;
    let deadline = Instant::now() + HANG;
    while metrics.spool_backlog.get() > 0 {
        assert!(
            Instant::now() < deadline,
            "spool not replayed after the broker returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(&svc).await;
    let brokers = format!("127.0.0.1:{port}");
    let want = returned.clone();
    let seen = tokio::task::spawn_blocking(move || topic_ids(&brokers, &want))
        .await
        .unwrap();
    assert!(
        returned.is_subset(&seen),
        "{} of {} decisions missing",
        returned.difference(&seen).count(),
        returned.len()
    );
}

#[test]
#[ignore = "needs the tansu broker: run scripts/test.sh"]
fn kill_9_of_the_service_in_kafka_mode_loses_no_decision_a_client_received() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("TRADESERVE_EVENTS__SINK", "both".to_owned()),
        (
            "TRADESERVE_EVENTS__AUDIT_LOG",
            dir.path().join("audit.jsonl").display().to_string(),
        ),
        ("TRADESERVE_EVENTS__KAFKA__BROKERS", broker.bootstrap()),
        ("TRADESERVE_EVENTS__KAFKA__PARTITIONS", "3".to_owned()),
        (
            "TRADESERVE_EVENTS__KAFKA__SPOOL_DIR",
            dir.path().join("spool").display().to_string(),
        ),
        (
            "TRADESERVE_CONTROL__FILE",
            dir.path().join("control.json").display().to_string(),
        ),
    ];
    let bin = env!("CARGO_BIN_EXE_tradeserve");
    let mut received = BTreeSet::new();
    for round in 0..2 {
        let mut server = tradeserve_testkit::ServiceProcess::start(bin, &envs);
        let clients = tradeserve_testkit::hammer(&server.addr, 16);
        // Killed after a few hundred decisions (a count, not a time), a different number in
        // each round.
        wait_for("decisions under load", || {
            tradeserve_testkit::metric_sum(&server.addr, "tradeserve_decisions_total")
                >= 300.0 + 150.0 * round as f64
        });
        kill(Pid::from_raw(server.child.id() as i32), Signal::SIGKILL).unwrap();
        server.child.wait().unwrap();
        let got: Vec<String> = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        assert!(
            got.len() > 100,
            "round {round}: only {} decisions",
            got.len()
        );
        received.extend(got);
    }
    // One more start delivers what the crashes left in the write-ahead log.
    let _server = tradeserve_testkit::ServiceProcess::start(bin, &envs);
    let seen = topic_ids(&broker.bootstrap(), &received);
    let missing: Vec<&String> = received.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} of {} decisions clients received are not on the topic: {:?}",
        missing.len(),
        received.len(),
        &missing[..missing.len().min(5)]
    );
}
