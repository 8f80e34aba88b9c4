//! The Open Inference Protocol client against a real server: KServe's Python model server
//! running `serving/kserve/onnx_server.py` on the bundled models (started on a free loopback
//! port, stopped by its process group). Every role's golden vectors through the remote path
//! equal the in-process engine's; an outage, a silent server and a wrong model name each end
//! as a typed error, never a hang past the deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tradeserve_core::error::ModelError;
use tradeserve_core::types::Role;
use tradeserve_models::load_model_dir;
use tradeserve_models::remote::{KserveV2, KserveV2Config, REMOTE_TOLERANCE, verify_golden};
use tradeserve_testkit::{HANG, KserveServer};

fn models() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
        .canonicalize()
        .unwrap()
}

fn client(url: &str) -> KserveV2 {
    KserveV2::new(KserveV2Config {
        url: url.to_owned(),
        model: "{role}-{version}".into(),
        versioned: false,
        ..KserveV2Config::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
async fn golden_vectors_through_the_server_equal_in_process() {
    let server = KserveServer::start(&models());
    let kserve = client(&server.url());
    let mut checked = 0;
    for role in Role::ALL {
        for version in ["1", "2"] {
            let dir = models().join(role.as_str()).join(version);
            if !dir.is_dir() {
                continue;
            }
            let remote = kserve.model(role, version);
            let worst = verify_golden(remote.as_ref(), &dir.join("golden.json"), HANG)
                .await
                .unwrap_or_else(|e| panic!("{role} v{version}: {e}"));
            assert!(worst <= REMOTE_TOLERANCE, "{role} v{version}: {worst:e}");
            // And against this process's engine on the same rows.
            let local = load_model_dir(&dir, role, "file://test".into()).unwrap();
            let golden: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
            for x in golden["inputs"].as_array().unwrap().iter().take(8) {
                let x: Vec<f32> = serde_json::from_value(x.clone()).unwrap();
                let there = remote
                    .infer(x.clone(), Instant::now() + HANG)
                    .await
                    .unwrap();
                let here = local.model.predict(&x).unwrap();
                for (a, b) in there.iter().zip(here) {
                    assert!(
                        (a - b).abs() <= REMOTE_TOLERANCE,
                        "{role} v{version}: {a} vs {b}"
                    );
                }
            }
            assert_eq!(remote.backend().kind, "kserve_v2");
            assert_eq!(remote.backend().model, format!("{role}-{version}"));
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} role versions checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
async fn an_outage_or_a_wrong_name_is_an_error_never_a_hang() {
    let mut server = KserveServer::start(&models());
    let kserve = client(&server.url());
    let row = vec![0.0f32; 12];
    let soon = || Instant::now() + HANG;
    // A name the server does not serve: its 404, named.
    let missing = kserve.model(Role::BullSpecialist, "99");
    match missing.infer(row.clone(), soon()).await {
        Err(ModelError::Unavailable(why)) => assert!(why.contains("404"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A deadline already past: no call at all.
    let bull = kserve.model(Role::BullSpecialist, "1");
    assert_eq!(
        bull.infer(row.clone(), Instant::now()).await,
        Err(ModelError::Deadline)
    );
    bull.infer(row.clone(), soon()).await.unwrap();
    // The server killed: refused (the pooled connection is gone too), not left to run into
    // the deadline, which would be `Deadline`.
    server.kill();
    match bull.infer(row.clone(), soon()).await {
        Err(ModelError::Unavailable(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_never_answers_ends_at_the_deadline() {
    // Accepts connections and reads, never answers (fault injection, no real server needed).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let bull = client(&url).model(Role::BullSpecialist, "1");
    let started = Instant::now();
    let deadline = started + Duration::from_millis(200);
    assert_eq!(
        bull.infer(vec![0.0; 12], deadline).await,
        Err(ModelError::Deadline)
    );
    // Not before it (an upper bound would be a speed test: the error kind says it ended at
    // the deadline rather than on a failure).
    let late = started.elapsed();
    assert!(late >= Duration::from_millis(200), "{late:?}");
}
