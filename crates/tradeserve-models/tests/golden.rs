//! Golden tests: the tract engine reproduces Python's onnxruntime on every bundled model, the
//! whole ensemble reproduces the training pipeline, and broken folders are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use time::OffsetDateTime;
use tradeserve_core::pipeline::evaluate;
use tradeserve_core::ports::FeatureSnapshot;
use tradeserve_core::types::{Role, Specialist};
use tradeserve_models::model_dir::golden_max_diff;
use tradeserve_models::{BundledModels, ModelLoadError, VersionSelection, load_model_dir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bundled() -> BundledModels {
    BundledModels::new(repo().join("models"))
}

#[test]
fn every_bundled_model_matches_onnxruntime_within_1e_5() {
    let models = bundled();
    for role in Role::ALL {
        assert_eq!(
            models.versions(role),
            vec!["1".to_owned(), "2".to_owned()],
            "{role}"
        );
        for version in ["1", "2"] {
            let loaded = models.load(role, version).unwrap();
            assert_eq!(loaded.info.version, version);
            assert_eq!(loaded.info.name, format!("tradeserve.{role}"));
            assert_eq!(loaded.info.sha256.len(), 64);
            let golden = std::fs::read(
                repo()
                    .join("models")
                    .join(role.as_str())
                    .join(version)
                    .join("golden.json"),
            )
            .unwrap();
            let worst = golden_max_diff(loaded.model.as_ref(), &golden).unwrap();
            assert!(worst <= 1e-5, "{role} v{version}: {worst:e}");
        }
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{what}: rust {got:?} python {want:?}");
    }
}

#[test]
fn the_ensemble_reproduces_the_training_pipeline() {
    for version in ["1", "2"] {
        let set = bundled().load_set(&VersionSelection::all(version)).unwrap();
        let text =
            std::fs::read_to_string(repo().join(format!("data/golden/ensemble_v{version}.json")))
                .unwrap();
        let golden: Value = serde_json::from_str(&text).unwrap();
        let rows = golden["rows"].as_array().unwrap();
        assert!(rows.len() >= 20);
        for row in rows {
            let features: [f64; 12] = floats(&row["features"]).try_into().unwrap();
            let hit_rates: [f64; 3] = floats(&row["hit_rates"]).try_into().unwrap();
            let snapshot = FeatureSnapshot {
                as_of: OffsetDateTime::UNIX_EPOCH,
                price: 100.0,
                features,
                hit_rates,
            };
            let eval = evaluate(&set, &snapshot, None).unwrap();
            assert_close("regime", &eval.regime, &floats(&row["regime_probs"]), 1e-5);
            assert_close("weights", &eval.weights, &floats(&row["weights"]), 1e-5);
            for s in Specialist::ALL {
                assert_close(
                    s.role().as_str(),
                    &eval.specialists[s.index()],
                    &floats(&row["specialists"][s.role().as_str()]),
                    1e-5,
                );
            }
            assert_close("blended", &eval.blended, &floats(&row["blended"]), 1e-5);
            let sum: f64 = eval.blended.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9);
        }
    }
}

fn copy_model(role: Role, version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("models").join(role.as_str()).join(version);
    for f in ["MLmodel", "model.onnx", "golden.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn load(dir: &Path, role: Role) -> Result<(), ModelLoadError> {
    load_model_dir(dir, role, "test".into()).map(|_| ())
}

#[test]
fn broken_folders_are_refused_with_the_reason() {
    // A flipped byte in the graph: the digest no longer matches what training recorded.
    let dir = copy_model(Role::BullSpecialist, "1");
    let path = dir.path().join("model.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        load(dir.path(), Role::BullSpecialist),
        Err(ModelLoadError::Digest { .. })
    ));

    // Garbage with a matching digest: the engine refuses it.
    let dir = copy_model(Role::BullSpecialist, "1");
    std::fs::write(dir.path().join("model.onnx"), b"not an onnx graph").unwrap();
    let text = std::fs::read_to_string(dir.path().join("MLmodel")).unwrap();
    let digest = text
        .split("\"model_sha256\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    use sha2::Digest;
    let new = hex::encode(sha2::Sha256::digest(b"not an onnx graph"));
    std::fs::write(dir.path().join("MLmodel"), text.replace(&digest, &new)).unwrap();
    assert!(matches!(
        load(dir.path(), Role::BullSpecialist),
        Err(ModelLoadError::Engine { .. })
    ));

    // A specialist offered as the meta-controller: wrong role and columns.
    let dir = copy_model(Role::BullSpecialist, "1");
    assert!(matches!(
        load(dir.path(), Role::MetaController),
        Err(ModelLoadError::Signature { .. })
    ));

    // Golden outputs that the model does not reproduce.
    let dir = copy_model(Role::BearSpecialist, "1");
    let g = std::fs::read_to_string(dir.path().join("golden.json")).unwrap();
    let mut v: Value = serde_json::from_str(&g).unwrap();
    v["outputs"][0][0] = Value::from(0.123);
    std::fs::write(dir.path().join("golden.json"), v.to_string()).unwrap();
    assert!(matches!(
        load(dir.path(), Role::BearSpecialist),
        Err(ModelLoadError::Golden { .. })
    ));

    // Missing graph file.
    let dir = copy_model(Role::RegimeDetector, "2");
    std::fs::remove_file(dir.path().join("model.onnx")).unwrap();
    assert!(matches!(
        load(dir.path(), Role::RegimeDetector),
        Err(ModelLoadError::Io { .. })
    ));

    // Unknown version.
    assert!(matches!(
        bundled().load(Role::RegimeDetector, "99"),
        Err(ModelLoadError::MissingVersion { .. })
    ));
}

#[test]
fn a_training_reference_must_belong_to_its_model() {
    // The bundled one loads with the model.
    let m = bundled().load(Role::RegimeDetector, "1").unwrap();
    let reference = m
        .drift_reference
        .expect("bundled models ship reference.json");
    assert_eq!(reference.features.len(), 12);
    assert_eq!(reference.model_sha256, m.info.sha256);

    // Another version's reference beside this model: refused, and why.
    let dir = copy_model(Role::BullSpecialist, "1");
    let other = repo().join("models/bull_specialist/2/reference.json");
    std::fs::copy(other, dir.path().join("reference.json")).unwrap();
    match load(dir.path(), Role::BullSpecialist) {
        Err(ModelLoadError::Reference { cause, .. }) => {
            assert!(cause.contains("sha256"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
    // Malformed: fractions that do not sum to 1.
    let dir = copy_model(Role::BullSpecialist, "1");
    let own = repo().join("models/bull_specialist/1/reference.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(own).unwrap()).unwrap();
    v["features"]["ret_1"]["fractions"][0] = Value::from(0.5);
    std::fs::write(dir.path().join("reference.json"), v.to_string()).unwrap();
    match load(dir.path(), Role::BullSpecialist) {
        Err(ModelLoadError::Reference { cause, .. }) => assert!(cause.contains("ret_1"), "{cause}"),
        other => panic!("{other:?}"),
    }
    // None at all: the model loads, its inputs unwatched.
    let dir = copy_model(Role::BullSpecialist, "1");
    assert!(load(dir.path(), Role::BullSpecialist).is_ok());
}
