//! Decisions to Kafka through the whole service, against librdkafka's mock cluster: the
//! decision ids on the topic equal the ones returned to clients, every event matches the
//! published schema, and the audit log (sink = both) holds the same set.
//! (The real-broker end-to-end and fault tests run against tansu.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use tower::ServiceExt;
use tradeserve_features::ReplayClock;
use tradeserve_replay::{ModelStore, Replayer, replay_kafka};
use tradeserve_server::app::router;
use tradeserve_server::config::{Config, SinkKind};
use tradeserve_server::serve::build_with_clock;
use tradeserve_testkit::{HANG, event_schema, read_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_holds_exactly_the_decisions_clients_received() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("trading_decisions", 3, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.events.sink = SinkKind::Both;
    config.events.audit_log = dir.path().join("audit.jsonl");
    config.control.file = dir.path().join("control.json");
    config.events.kafka.brokers = cluster.bootstrap_servers();
    config.events.kafka.create_topic = false; // the mock broker has no admin API
    config.events.kafka.spool_dir = dir.path().join("spool");
    config.server.request_deadline = tradeserve_core::bounded::PositiveDuration::new(HANG).unwrap();
    let c = config.clone();
    let service =
        tokio::task::spawn_blocking(move || build_with_clock(&c, ReplayClock::Fixed(500)))
            .await
            .unwrap()
            .unwrap();

    let mut returned = BTreeSet::new();
    for (i, symbol) in ["AAPL", "MSFT", "NVDA", "BRK.B"]
        .iter()
        .cycle()
        .take(200)
        .enumerate()
    {
        let body = format!(r#"{{"symbol":"{symbol}","risk_check":{}}}"#, i % 2 == 0);
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/predict")
            .body(Body::from(body))
            .unwrap();
        let res = router(Arc::clone(&service.state))
            .oneshot(req)
            .await
            .unwrap();
        let status = res.status();
        assert!(status == StatusCode::OK || status == StatusCode::FORBIDDEN);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        tradeserve_testkit::openapi::assert_documented(
            "POST",
            "/api/v1/predict",
            status.as_u16(),
            &bytes,
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        returned.insert(v["decision_id"].as_str().unwrap().to_owned());
    }
    let kafka = service.kafka.clone().unwrap();
    let report = tokio::task::spawn_blocking(move || kafka.shutdown(HANG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.spooled, 0);
    service.audit_log.as_ref().unwrap().shutdown(HANG).unwrap();

    let validator = event_schema();
    let mut on_topic = BTreeSet::new();
    let records = read_topic(&cluster.bootstrap_servers(), "trading_decisions", 3, |r| {
        on_topic.insert(r.decision_id());
        on_topic.len() >= returned.len()
    });
    for r in &records {
        assert!(
            validator.is_valid(&r.event),
            "event does not match the schema: {}",
            r.event
        );
        assert_eq!(
            r.key,
            r.event["symbol"].as_str().unwrap().as_bytes(),
            "key = symbol"
        );
    }
    assert_eq!(on_topic, returned);
    let audit: BTreeSet<String> = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["decision_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(audit, returned);

    // Replay from the topic: every decision reproduces.
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut replayer = Replayer::new(ModelStore::Bundled(models), Config::default().sizing);
    let brokers = cluster.bootstrap_servers();
    let report = tokio::task::spawn_blocking(move || {
        replay_kafka(
            &brokers,
            "trading_decisions",
            &Default::default(),
            &mut replayer,
        )
        .unwrap();
        replayer.finish()
    })
    .await
    .unwrap();
    assert_eq!(
        (report.matched, report.mismatched, report.skipped),
        (200, 0, 0),
        "{report:?}"
    );
}
