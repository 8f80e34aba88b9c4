//! The decision path without HTTP: `Pipeline::decide` on the embedded adapters (replay,
//! tract, in-process ledger, audit log), and the serialization of the response body.
//!
//! `cargo bench -p tradeserve-server --bench pipeline`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use time::OffsetDateTime;
use tradeserve_core::pipeline::Requester;
use tradeserve_features::ReplayClock;
use tradeserve_server::config::Config;
use tradeserve_server::serve::build_with_clock;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.events.audit_log = dir.path().join("audit.jsonl");
    config.control.file = dir.path().join("control.json");
    let service = build_with_clock(&config, ReplayClock::Fixed(500)).unwrap();
    let state = service.state.clone();
    let models = state.control.routing().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, body) in [
        ("predict risk_check", &br#"{"symbol":"AAPL"}"#[..]),
        (
            "predict no risk_check",
            &br#"{"symbol":"AAPL","risk_check":false}"#[..],
        ),
    ] {
        c.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                state
                    .pipeline
                    .decide(
                        &models,
                        black_box(body),
                        Instant::now(),
                        OffsetDateTime::now_utc(),
                        Requester::default(),
                    )
                    .await
                    .unwrap()
            })
        });
    }
    let tradeserve_core::pipeline::Answered::Fresh(prediction) = rt
        .block_on(state.pipeline.decide(
            &models,
            br#"{"symbol":"AAPL"}"#,
            Instant::now(),
            OffsetDateTime::now_utc(),
            Requester::default(),
        ))
        .unwrap()
    else {
        panic!("a request without a key is decided afresh")
    };
    // What acknowledging after the write costs per decision: serialize the event and append
    // it with write(2) (page cache), as the request path now does.
    let audit = service.audit_log.clone().unwrap();
    let event = tradeserve_testkit::sample_event(uuid::Uuid::now_v7(), "AAPL");
    c.bench_function("audit log emit (serialize + chain + write(2))", |b| {
        use tradeserve_core::ports::EventSink;
        b.iter(|| audit.emit(black_box(event.clone()).into()).unwrap())
    });
    // The same without the hash chain (events.audit_chain = false), back to back.
    let dir = tempfile::tempdir().unwrap();
    let unchained = tradeserve_events::AuditLog::start(
        tradeserve_events::AuditLogConfig::new(dir.path().join("unchained.jsonl")),
        tradeserve_events::SinkMetrics::detached().unwrap(),
    )
    .unwrap();
    c.bench_function("audit log emit, unchained (serialize + write(2))", |b| {
        use tradeserve_core::ports::EventSink;
        b.iter(|| unchained.emit(black_box(event.clone()).into()).unwrap())
    });
    unchained
        .shutdown(std::time::Duration::from_secs(5))
        .unwrap();
    c.bench_function("serialize decision", |b| {
        b.iter(|| serde_json::to_vec(black_box(prediction.outcome.decision())).unwrap())
    });
    service
        .audit_log
        .as_ref()
        .unwrap()
        .shutdown(std::time::Duration::from_secs(5))
        .unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
