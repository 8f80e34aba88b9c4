//! The MLflow source against a real `mlflow server` (started by the test harness): publish,
//! resolve aliases, download into the cache, load and verify, refuse a corrupt version.
//!
//! Ignored by plain `cargo test`; `scripts/test.sh` installs MLflow and runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use tradeserve_core::types::Role;
use tradeserve_models::mlflow::publish::publish;
use tradeserve_models::mlflow::registry::RegistryError;
use tradeserve_models::mlflow::{MlflowClient, MlflowError, MlflowRegistry, ModelCache, RoleSpec};
use tradeserve_models::model_dir::ModelLoadError;
use tradeserve_testkit::{HANG, MlflowServer, corrupt_model_copy};

fn model_dir(role: Role, version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(role.as_str())
        .join(version)
}

fn specs() -> Vec<RoleSpec> {
    Role::ALL
        .iter()
        .map(|r| RoleSpec {
            role: *r,
            name: r.registry_name(),
            alias: "champion".into(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real MLflow server: run scripts/test.sh"]
async fn publish_resolve_cache_load_and_refuse_corruption() {
    let server = MlflowServer::start();
    let client = MlflowClient::new(&server.url(), None, HANG).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let registry = MlflowRegistry::new(client.clone(), ModelCache::new(cache_dir.path()), specs());

    // Nothing published: the alias is missing, which is not a transient error.
    let err = registry.resolve().await.unwrap_err();
    assert!(matches!(err, MlflowError::NotFound(_)), "{err:?}");
    assert!(!err.is_transient());

    for role in Role::ALL {
        let p = publish(
            &client,
            &model_dir(role, "1"),
            &role.registry_name(),
            Some("champion"),
        )
        .await
        .unwrap();
        assert_eq!(p.version, "1");
    }
    let first = registry.resolve().await.unwrap();
    assert!(first.versions().values().all(|v| v == "1"));
    registry.fetch(&first).await.unwrap();
    let set = tokio::task::block_in_place(|| registry.load_set(&first)).unwrap();
    for m in set.models() {
        assert_eq!(m.info.version, "1");
        assert_eq!(m.info.alias.as_deref(), Some("champion"));
        assert_eq!(m.info.source, format!("models:/{}/1", m.info.name));
        // The cached folder is the bundled one, byte for byte.
        let cached =
            std::fs::read(cache_dir.path().join(&m.info.name).join("1/model.onnx")).unwrap();
        assert_eq!(
            cached,
            std::fs::read(model_dir(m.info.role, "1").join("model.onnx")).unwrap()
        );
    }

    // Version 2 of one role, alias moved: only that role changes.
    let bull = Role::BullSpecialist.registry_name();
    let p = publish(
        &client,
        &model_dir(Role::BullSpecialist, "2"),
        &bull,
        Some("champion"),
    )
    .await
    .unwrap();
    assert_eq!(p.version, "2");
    let second = registry.resolve().await.unwrap();
    assert_eq!(second.models[&Role::BullSpecialist].version, "2");
    assert_eq!(second.models[&Role::BearSpecialist].version, "1");
    registry.fetch(&second).await.unwrap();
    let set = tokio::task::block_in_place(|| registry.load_set(&second)).unwrap();
    assert_eq!(set.versions()[&Role::BullSpecialist], "2");

    // A corrupt version 3: downloads fine, refused at load with the reason.
    let bad = tempfile::tempdir().unwrap();
    corrupt_model_copy(&model_dir(Role::BullSpecialist, "2"), bad.path());
    publish(&client, bad.path(), &bull, Some("champion"))
        .await
        .unwrap();
    let third = registry.resolve().await.unwrap();
    assert_eq!(third.models[&Role::BullSpecialist].version, "3");
    registry.fetch(&third).await.unwrap();
    let err = tokio::task::block_in_place(|| registry.load_set(&third)).unwrap_err();
    assert!(
        matches!(err, RegistryError::Load(ModelLoadError::Digest { .. })),
        "{err:?}"
    );

    // A folder that is not a model is refused before anything is uploaded.
    let empty = tempfile::tempdir().unwrap();
    assert!(publish(&client, empty.path(), &bull, None).await.is_err());

    // MLflow gone: resolution fails as a transient error; the cache still loads.
    drop(server);
    let err = registry.resolve().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let set = tokio::task::block_in_place(|| registry.load_set(&second)).unwrap();
    assert_eq!(set.versions()[&Role::BullSpecialist], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real MLflow server: run scripts/test.sh"]
async fn models_published_with_the_python_client_are_served() {
    let server = MlflowServer::start();
    let python = MlflowServer::binary().with_file_name("python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../training/publish.py");
    tradeserve_testkit::run_ok(std::process::Command::new(python).arg(script).args([
        "--tracking-uri",
        &server.url(),
        "--version",
        "2",
        "--alias",
        "champion",
    ]));
    let client = MlflowClient::new(&server.url(), None, HANG).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let registry = MlflowRegistry::new(client, ModelCache::new(cache.path()), specs());
    let resolution = registry.resolve().await.unwrap();
    assert!(
        resolution.versions().values().all(|v| v == "1"),
        "first registry version of each model"
    );
    registry.fetch(&resolution).await.unwrap();
    let set = tokio::task::block_in_place(|| registry.load_set(&resolution)).unwrap();
    for m in set.models() {
        // The bundled v2 folder, now registry version 1 of its model.
        let bundled = std::fs::read(model_dir(m.info.role, "2").join("model.onnx")).unwrap();
        let served = std::fs::read(cache.path().join(&m.info.name).join("1/model.onnx")).unwrap();
        assert_eq!(bundled, served);
    }
}
