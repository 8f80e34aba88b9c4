//! A real peer: the Python client of `serving/grpc/client.py` (grpcio, stubs generated from the
//! repository's `.proto` files at start; for the Open Inference Protocol, KServe's own
//! generated stubs) against the built binary gets, over both services, the decision REST gives
//! for the same request; a failed call's REST code arrives in its `ErrorInfo`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use tradeserve_testkit::grpc::{address, python_client};
use tradeserve_testkit::service::new_api_key;
use tradeserve_testkit::{HANG, ServiceProcess};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
const AT: &str = "2025-10-15T15:00:00Z";

fn client(grpc: &str, key: &str, extra: &[&str]) -> (bool, Value) {
    python_client(grpc, &[&["--key", key], extra].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs grpcio and KServe (scripts/test.sh installs them)"]
async fn a_python_client_generated_from_the_protos_gets_what_rest_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (trader, entry) = new_api_key(BIN, "desk-py", "trader", "");
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, entry).unwrap();
    let server = ServiceProcess::start(
        BIN,
        &[
            ("TRADESERVE_AUTH__KEYS_FILE", keys.display().to_string()),
            (
                "TRADESERVE_EVENTS__AUDIT_LOG",
                dir.path().join("audit.jsonl").display().to_string(),
            ),
            ("TRADESERVE_SERVER__GRPC_LISTEN", "127.0.0.1:0".into()),
        ],
    );
    let grpc = address(&server);
    let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
    for symbol in ["AAPL", "MSFT", "SPY"] {
        let rest: Value = http
            .post(format!("{}/api/v1/predict", server.url()))
            .bearer_auth(&trader)
            .json(&json!({"symbol": symbol, "timestamp": AT, "risk_check": false}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let request = ["--symbol", symbol, "--timestamp", AT, "--no-risk-check"];
        let (ok, native) = client(&grpc, &trader, &request);
        assert!(ok, "{native}");
        for field in [
            "symbol",
            "action",
            "confidence",
            "regime_probabilities",
            "strategy_weights",
        ] {
            assert_eq!(native[field], rest[field], "{symbol} {field}");
        }
        // protobuf's JSON writes 64-bit integers as strings.
        assert_eq!(
            native["recommended_quantity"].as_str().unwrap(),
            rest["recommended_quantity"].to_string()
        );
        assert_eq!(
            native["metadata"]["model_versions"],
            rest["metadata"]["model_versions"]
        );

        let (ok, oip) = client(&grpc, &trader, &[&request[..], &["--oip"]].concat());
        assert!(ok, "{oip}");
        let out = &oip["outputs"];
        assert_eq!(oip["model_name"], "tradeserve");
        assert_eq!(oip["model_version"], rest["metadata"]["model_version"]);
        assert_eq!(out["action"], rest["action"]);
        assert_eq!(out["confidence"], rest["confidence"]);
        assert_eq!(out["quantity"], rest["recommended_quantity"]);
        assert_eq!(out["approved"], true);
        let r = &rest["regime_probabilities"];
        assert_eq!(
            out["regime_probabilities"],
            json!([r["bull"], r["bear"], r["sideways"]])
        );
    }

    let (ok, failed) = client(&grpc, &trader, &["--symbol", "GME"]);
    assert!(!ok);
    assert_eq!(
        failed,
        json!({"code": "NOT_FOUND", "message": "no features for symbol GME", "reason": "unknown_symbol", "field": "symbol"})
    );
    let (ok, failed) = client(&grpc, "ts_wrong", &["--symbol", "AAPL"]);
    assert!(!ok);
    assert_eq!(failed["code"], "UNAUTHENTICATED");
    assert_eq!(failed["reason"], "unauthorized");
}
