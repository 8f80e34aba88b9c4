//! Random bodies (from `tradeserve_fuzz::body`: random bytes, random JSON with the API's field
//! names, mutated valid bodies) on every endpoint that takes a body — decisions, experiments,
//! rollouts, outcomes, bars, control actions — through the router: no 5xx, every 4xx in the
//! error shape, every response as `openapi.json` documents it. (The million-case runs of the
//! parsers themselves are in `crates/tradeserve-fuzz`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use proptest::prop_assert;
use tradeserve_fuzz::{body, runner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_random_bodies_with_a_4xx_in_the_error_shape_never_a_5xx() {
    let h = common::harness_with(|c| {
        c.features.source = tradeserve_server::config::FeatureSourceKind::Replay;
        c.server.request_deadline = tradeserve_core::bounded::PositiveDuration::secs(30);
    });
    let live = common::harness_with(|c| {
        c.features.source = tradeserve_server::config::FeatureSourceKind::Live;
    });
    let routes: &[(&str, &str)] = &[
        ("POST", "/api/v1/predict"),
        ("POST", "/api/v1/experiments"),
        ("PUT", "/api/v1/experiments/e1"),
        ("POST", "/api/v1/rollouts"),
        ("POST", "/api/v1/rollouts/r1/promote"),
        ("POST", "/api/v1/outcomes"),
        ("POST", "/api/v1/rollback"),
        ("POST", "/api/v1/bars"),
    ];
    let started = Instant::now();
    let mut r = runner(30_000);
    let strategy = (proptest::sample::select(routes), body());
    let rt = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        r.run(&strategy, |((method, path), b)| {
            let target = if path == "/api/v1/bars" { &live } else { &h };
            let text = String::from_utf8_lossy(&b).into_owned();
            let (status, v) = rt.block_on(common::call_with(target, method, path, &[], &text));
            prop_assert!(
                !status.is_server_error(),
                "{method} {path}: {status} for {text:?}: {v}"
            );
            if status.is_client_error() {
                prop_assert!(
                    v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
                    "{method} {path}: {status} without the error shape: {v}"
                );
            }
            Ok(())
        })
    });
    result.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("router: 30000 cases in {:.1?}", started.elapsed());
}
