//! `tradeserve tfserving export` with a real TensorFlow (the Python `scripts/test.sh`
//! installs): every bundled model exports as a TF Serving model version
//! `<base>/<role>/<version>/` whose SavedModel answers the golden vectors through TensorFlow
//! within 1e-5 and has the serving signature TF Serving's REST API calls
//! (`serving_default`: `features` [batch, width] float32 → `probabilities` [batch, 3]); a model
//! that fails its checks is not exported and leaves nothing behind. No TF Serving binary is
//! installable here, so the SavedModel is checked through TensorFlow's own loader, the one
//! TF Serving uses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

fn models() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
}

fn python() -> PathBuf {
    std::env::var("TRADESERVE_TFEXPORT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tradeserve_testkit::cache_dir().join("tfexport-venv/bin/python"))
}

#[test]
#[ignore = "needs TensorFlow (scripts/test.sh installs it)"]
fn bundled_models_export_as_verified_savedmodels_and_a_broken_one_does_not() {
    let base = tempfile::tempdir().unwrap();
    for (role, width) in [("bull_specialist", 12), ("meta_controller", 9)] {
        let out = tradeserve_testkit::run_ok(
            Command::new(BIN)
                .args(["tfserving", "export", "--model"])
                .arg(models().join(role).join("2"))
                .arg("--base")
                .arg(base.path())
                .arg("--python")
                .arg(python()),
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let dir = base.path().join(role).join("2");
        assert_eq!(report["path"], dir.display().to_string(), "{report}");
        assert_eq!(
            (&report["role"], &report["version"]),
            (&Value::from(role), &Value::from("2"))
        );
        assert!(report["max_diff"].as_f64().unwrap() <= 1e-5, "{report}");
        assert!(report["rows"].as_u64().unwrap() > 0);
        assert!(dir.join("saved_model.pb").is_file());
        assert!(dir.join("assets.extra/golden.json").is_file());
        // The signature TF Serving's predict API calls, read back by TensorFlow's loader.
        let check = Command::new(python())
            .arg("-c")
            .arg(
                "import sys, tensorflow as tf\n\
                 f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n\
                 (_, kw) = f.structured_input_signature\n\
                 s = kw['features']\n\
                 print(s.dtype.name, s.shape.as_list(), list(f.structured_outputs))",
            )
            .arg(&dir)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&check.stdout);
        assert_eq!(
            printed.trim(),
            format!("float32 [None, {width}] ['probabilities']"),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }

    // A corrupted copy fails its in-process checks: refused, nothing written.
    let broken = tempfile::tempdir().unwrap();
    let copy = broken.path().join("bear_specialist/1");
    tradeserve_testkit::corrupt_model_copy(&models().join("bear_specialist/1"), &copy);
    let out = Command::new(BIN)
        .args(["tfserving", "export", "--model"])
        .arg(&copy)
        .arg("--base")
        .arg(base.path())
        .arg("--python")
        .arg(python())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not exported"), "{stderr}");
    assert!(!base.path().join("bear_specialist").exists());
}
