//! The published assignment test vectors (`docs/assignment_vectors.json`, computed with
//! Python's `mmh3`) against the service's assignment, and the file against `mmh3` itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;
use tradeserve_core::experiment::{self, Arm};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn every_published_vector_matches_the_service() {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(root().join("docs/assignment_vectors.json")).unwrap(),
    )
    .unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 50);
    for v in vectors {
        let salt = v["salt"].as_str().unwrap();
        let key = v["key"].as_str().unwrap();
        assert_eq!(
            u64::from(experiment::hash(salt, key)),
            v["murmur3_x86_32"].as_u64().unwrap(),
            "{v}"
        );
        let bucket = experiment::bucket(salt, key);
        assert_eq!(u64::from(bucket), v["bucket"].as_u64().unwrap(), "{v}");
        for (split, arm) in v["arm_at_split"].as_object().unwrap() {
            let want = match arm.as_str().unwrap() {
                "treatment" => Arm::Treatment,
                _ => Arm::Control,
            };
            assert_eq!(
                experiment::arm_for(bucket, split.parse().unwrap()),
                want,
                "{v} at {split}"
            );
        }
    }
}

#[test]
#[ignore = "needs the test harness's Python venv with mmh3 (scripts/test.sh)"]
fn the_published_vectors_match_python_mmh3() {
    let python = std::env::var("TRADESERVE_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap();
        format!("{home}/.cache/tradeserve/train-venv/bin/python")
    });
    let out = std::process::Command::new(python)
        .arg(root().join("scripts/assignment_vectors.py"))
        .arg("--check")
        .arg(root().join("docs/assignment_vectors.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("52 vectors checked with mmh3: 0 mismatches"),
        "{text}"
    );
}
