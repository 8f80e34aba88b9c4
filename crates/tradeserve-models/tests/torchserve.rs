//! TorchServe 0.12 for real (Java front end, Python workers running the project's handler
//! with ONNX Runtime, no torch): every role's version packaged by `package` (verified first),
//! registered through the management API, answers its golden vectors through the inference
//! API as the in-process engine does; a model that does not verify is not packaged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use tradeserve_core::types::Role;
use tradeserve_models::remote::package::{PackageError, PackageSpec, package};
use tradeserve_models::remote::{REMOTE_TOLERANCE, TorchServe, TorchServeConfig, verify_golden};
use tradeserve_testkit::{HANG, TorchServeServer};

fn models() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
        .canonicalize()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TorchServe (scripts/test.sh installs it)"]
async fn packaged_versions_answer_their_golden_vectors_through_torchserve() {
    let server = TorchServeServer::start();
    let archiver = TorchServeServer::archiver();
    let client = TorchServe::new(TorchServeConfig {
        inference_url: server.inference_url(),
        management_url: server.management_url(),
        ..TorchServeConfig::default()
    })
    .unwrap();
    let mut served = Vec::new();
    for (role, version) in Role::ALL
        .into_iter()
        .map(|r| (r, "1"))
        .chain([(Role::BullSpecialist, "2")])
    {
        let dir = models().join(role.as_str()).join(version);
        let name = role.as_str();
        let mar = package(&PackageSpec {
            model_dir: &dir,
            role,
            name,
            version,
            export_path: &server.store(),
            archiver: &archiver,
        })
        .unwrap_or_else(|e| panic!("{role} v{version}: {e}"));
        assert!(mar.is_file());
        let mar_name = format!("{name}-{version}.mar");
        std::fs::rename(&mar, server.store().join(&mar_name)).unwrap();
        server.register(&mar_name, 1).unwrap();
        served.push((role, version, dir));
    }
    for (role, version, dir) in served {
        let remote = client.model(role, version);
        assert_eq!(
            remote.backend().endpoint,
            format!("{}/predictions/{role}/{version}", server.inference_url())
        );
        let worst = verify_golden(remote.as_ref(), &dir.join("golden.json"), HANG)
            .await
            .unwrap_or_else(|e| panic!("{role} v{version}: {e}"));
        assert!(worst <= REMOTE_TOLERANCE, "{role} v{version}: {worst:e}");
        let (status, body) = server.management("GET", &format!("/models/{role}/{version}"));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"READY\""), "{body}");
    }
}

#[test]
fn a_model_that_does_not_verify_is_not_packaged() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("bull_specialist/1");
    tradeserve_testkit::corrupt_model_copy(&models().join("bull_specialist/1"), &broken);
    let err = package(&PackageSpec {
        model_dir: &broken,
        role: Role::BullSpecialist,
        name: "bull_specialist",
        version: "1",
        export_path: tmp.path(),
        archiver: std::path::Path::new("/nonexistent/torch-model-archiver"),
    })
    .unwrap_err();
    assert!(matches!(err, PackageError::Model(_)), "{err}");
    assert!(!tmp.path().join("bull_specialist.mar").exists());
}
