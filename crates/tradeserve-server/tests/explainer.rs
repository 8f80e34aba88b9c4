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

/// One fixed point in feature space.
fn snapshot() -> FeatureSnapshot {
    FeatureSnapshot {
        as_of: OffsetDateTime::UNIX_EPOCH,
        price: 100.0,
        features: [
            0.0005, 0.001, 0.002, 0.004, 0.0008, 0.0009, 0.9, 0.55, 0.001, 0.002, 0.0015, 0.3,
        ],
        hit_rates: [0.5, 0.4, 0.6],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_bound_an_explanation_is_refused_at_once() {
    let models = BundledModels::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"));
    let set = Arc::new(models.load_set(&VersionSelection::default()).unwrap());
    let snapshot = snapshot();
    let action = evaluate(&set, &snapshot, None).unwrap().action;
    let explainer = BlockingExplainer::new(ExplainConfig {
        max_in_flight: std::num::NonZeroUsize::MIN,
        ..Default::default()
    })
    .unwrap();
    let job = || ExplainJob {
        models: Arc::clone(&set),
        snapshot: snapshot.clone(),
        strategy_override: None,
        action,
        deadline: std::time::Instant::now() + tradeserve_testkit::HANG,
        fallback: Default::default(),
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

/// Specialists served remotely: each gets the explanation's coalitions as one batched call,
/// and the explanation equals the in-process one (the mirror answers with the same engine).
/// A dead backend fails the explanation naming the role, unless the in-process fallback is
/// configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_roles_get_one_batched_call_per_explanation() {
    use std::sync::atomic::Ordering;
    use tradeserve_core::remote::Fallback;
    let models = BundledModels::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"));
    let local = models.load_set(&VersionSelection::default()).unwrap();
    let (remote, mirrors) = tradeserve_testkit::mirror::specialists_on_mirrors(&local);
    let (local, remote) = (Arc::new(local), Arc::new(remote));
    let snapshot = snapshot();
    let action = evaluate(&local, &snapshot, None).unwrap().action;
    let config = ExplainConfig::default();
    let explainer = BlockingExplainer::new(config).unwrap();
    let job = |models: &Arc<tradeserve_core::ModelSet>, fallback| ExplainJob {
        models: Arc::clone(models),
        snapshot: snapshot.clone(),
        strategy_override: None,
        action,
        deadline: std::time::Instant::now() + tradeserve_testkit::HANG,
        fallback,
    };
    let here = explainer
        .explain(job(&local, Fallback::None))
        .await
        .unwrap();
    let there = explainer
        .explain(job(&remote, Fallback::None))
        .await
        .unwrap();
    assert_eq!(here, there);
    // The baseline, the request, and 14 coalitions for each of 2 × 64 passes.
    let rows = 2 + 2 * config.permutations * 14;
    for m in &mirrors {
        assert_eq!(m.calls(), vec![rows], "one batched call per specialist");
    }

    mirrors[0].down.store(true, Ordering::SeqCst);
    let failed = explainer.explain(job(&remote, Fallback::None)).await;
    match failed {
        Err(PredictError::Model { role, .. }) => {
            assert_eq!(role, tradeserve_core::Role::BullSpecialist)
        }
        other => panic!("expected the bull specialist's failure, got {other:?}"),
    }
    let fell_back = explainer
        .explain(job(&remote, Fallback::InProcess))
        .await
        .unwrap();
    assert_eq!(here, fell_back);
}
