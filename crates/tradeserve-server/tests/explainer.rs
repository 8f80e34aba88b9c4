//! The server's explainer: bounded, and refusing at once beyond its bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use time::OffsetDateTime;
use tradeserve_core::PredictError;
use tradeserve_core::explain::ExplainConfig;
use tradeserve_core::pipeline::evaluate;
use tradeserve_core::ports::{ExplainJob, Explainer, FeatureSnapshot};
use tradeserve_models::{BundledModels, VersionSelection};
use tradeserve_server::explainer::BlockingExplainer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_bound_an_explanation_is_refused_at_once() {
    let models = BundledModels::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"));
    let set = Arc::new(models.load_set(&VersionSelection::default()).unwrap());
    let snapshot = FeatureSnapshot {
        as_of: OffsetDateTime::UNIX_EPOCH,
        price: 100.0,
        features: [
            0.0005, 0.001, 0.002, 0.004, 0.0008, 0.0009, 0.9, 0.55, 0.001, 0.002, 0.0015, 0.3,
        ],
        hit_rates: [0.5, 0.4, 0.6],
    };
    let action = evaluate(&set, &snapshot, None).unwrap().action;
    let explainer = BlockingExplainer::new(ExplainConfig {
        max_in_flight: 1,
        ..Default::default()
    })
    .unwrap();
    let job = || ExplainJob {
        models: Arc::clone(&set),
        snapshot: snapshot.clone(),
        strategy_override: None,
        action,
    };
    // Polled together: the first takes the only permit, the others are refused at once.
    let (a, b, c) = tokio::join!(
        explainer.explain(job()),
        explainer.explain(job()),
        explainer.explain(job())
    );
    let a = a.unwrap();
    assert!(matches!(b, Err(PredictError::ExplainOverloaded)), "{b:?}");
    assert!(matches!(c, Err(PredictError::ExplainOverloaded)), "{c:?}");
    // The permit is back once the first is done.
    let again = explainer.explain(job()).await.unwrap();
    assert_eq!(a, again);
}
