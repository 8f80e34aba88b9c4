//! The TF Serving REST predict client against KServe's model server, whose v1 protocol is TF
//! Serving's REST predict API (`/v1/models/<name>:predict`, `instances` → `predictions`,
//! `inputs` → `outputs`). This is not TF Serving itself: no `tensorflow_model_server` build
//! installs on this machine. Both request forms give every role's golden outputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;

use tradeserve_core::error::ModelError;
use tradeserve_core::types::Role;
use tradeserve_models::remote::{
    REMOTE_TOLERANCE, TfServing, TfServingConfig, TfServingForm, verify_golden,
};
use tradeserve_testkit::{HANG, KserveServer};

fn models() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
        .canonicalize()
        .unwrap()
}

fn client(url: &str, form: TfServingForm) -> TfServing {
    TfServing::new(TfServingConfig {
        url: url.to_owned(),
        model: "{role}-{version}".into(),
        versioned: false,
        form,
        ..TfServingConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KServe (scripts/test.sh installs it)"]
async fn both_request_forms_give_the_golden_outputs_on_kserve_v1() {
    let server = KserveServer::start(&models());
    for form in [TfServingForm::Instances, TfServingForm::Inputs] {
        let tf = client(&server.url(), form);
        for role in Role::ALL {
            let remote = tf.model(role, "1");
            assert_eq!(
                remote.backend().endpoint,
                format!("{}/v1/models/{role}-1:predict", server.url())
            );
            let golden = models().join(role.as_str()).join("1/golden.json");
            let worst = verify_golden(remote.as_ref(), &golden, HANG)
                .await
                .unwrap_or_else(|e| panic!("{role} {form:?}: {e}"));
            assert!(worst <= REMOTE_TOLERANCE, "{role} {form:?}: {worst:e}");
        }
    }
    // A model the server does not have: its error status, named.
    let tf = client(&server.url(), TfServingForm::Instances);
    match tf
        .model(Role::BullSpecialist, "99")
        .infer(vec![0.0; 12], Instant::now() + HANG)
        .await
    {
        Err(ModelError::Unavailable(why)) => assert!(why.contains("HTTP 4"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_versioned_path_is_tf_servings() {
    let tf = TfServing::new(TfServingConfig {
        url: "http://127.0.0.1:8501/".into(),
        ..TfServingConfig::default()
    })
    .unwrap();
    let m = tf.model(Role::BearSpecialist, "3");
    assert_eq!(
        m.backend().endpoint,
        "http://127.0.0.1:8501/v1/models/bear_specialist/versions/3:predict"
    );
    assert_eq!(m.backend().kind, "tfserving");
}
