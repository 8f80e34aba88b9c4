//! API-key quotas across a fleet, on the real binary: two replicas sharing a real
//! redis-server let a key through at its quota for the fleet (not twice it); with Redis gone,
//! each replica applies the quota on its own (counted, one warning), and a Redis outage under
//! load writes one warning line per period, not one per refused request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod load_common;

use tradeserve_testkit::raw_http::{connect, exchange};
use tradeserve_testkit::service::new_api_key;
use tradeserve_testkit::{RedisServer, ServiceProcess};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

fn start_replica(redis: &str, dir: &std::path::Path, keys: &str, n: usize) -> ServiceProcess {
    let path = |p: &str| dir.join(format!("{p}-{n}")).display().to_string();
    ServiceProcess::start(
        BIN,
        &[
            ("TRADESERVE_AUTH__KEYS_FILE", keys.to_owned()),
            ("TRADESERVE_LEDGER__STORE", "redis".to_owned()),
            ("TRADESERVE_LEDGER__REDIS_URL", redis.to_owned()),
            ("TRADESERVE_LEDGER__REDIS_PREFIX", "quotas".to_owned()),
            // Short: the outage below refuses each risk-checked order after this long.
            ("TRADESERVE_LEDGER__TIMEOUT", "100ms".to_owned()),
            ("TRADESERVE_EVENTS__AUDIT_LOG", path("audit.jsonl")),
            ("TRADESERVE_CONTROL__FILE", path("control.json")),
        ],
    )
}

/// A predict with `key` on a fresh connection: its status.
fn predict(addr: &str, key: &str, body: &str) -> u16 {
    let request = format!(
        "POST /api/v1/predict HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(&mut connect(addr), request.as_bytes()).0
}

/// Ten predicts with `key`, to each replica in turn: their statuses.
fn alternating(replicas: &[ServiceProcess; 2], key: &str, body: &str) -> Vec<u16> {
    (0..10)
        .map(|i| predict(&replicas[i % 2].addr, key, body))
        .collect()
}

fn passed(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s == 200).count()
}

/// The warnings a replica has logged since the last call whose message starts with `prefix`.
fn warnings(replica: &ServiceProcess, prefix: &str) -> usize {
    replica
        .logs
        .try_iter()
        .filter(|v| v["level"] == "WARN")
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
        })
        .count()
}

#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn a_key_gets_its_quota_from_the_fleet_and_from_each_replica_while_redis_is_down() {
    let _serial = load_common::serial();
    let mut redis = Some(RedisServer::start());
    let url = redis.as_ref().unwrap().url();
    let dir = tempfile::tempdir().unwrap();
    load_common::new_shared_ledger(&url, "quotas");
    // desk-1: one request a minute, three at once (nothing refills while the test runs);
    // desk-2: no quota.
    let (key, limited) = new_api_key(BIN, "desk-1", "trader", "rate_per_minute = 1\nburst = 3\n");
    let (open_key, open) = new_api_key(BIN, "desk-2", "trader", "");
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, format!("{limited}{open}")).unwrap();
    let keys = keys.display().to_string();
    let replicas = [0, 1].map(|n| start_replica(&url, dir.path(), &keys, n));
    let unchecked = r#"{"symbol":"AAPL","risk_check":false}"#;

    // Alternating replicas: the fleet lets three through, not three each.
    let statuses = alternating(&replicas, &key, unchecked);
    assert_eq!(passed(&statuses), 3, "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");

    // Redis gone: each replica applies the whole quota on its own (its burst of three).
    redis.take();
    let statuses = alternating(&replicas, &key, unchecked);
    assert_eq!(passed(&statuses), 6, "{statuses:?}");
    for r in &replicas {
        assert_eq!(
            tradeserve_testkit::metric_sum(&r.addr, "tradeserve_quota_store_unavailable_total"),
            5.0
        );
        assert_eq!(warnings(r, "shared quotas unavailable"), 1);
    }

    // Risk-checked orders are refused while the ledger's Redis is down (503), each counted;
    // the log says so once per period, not once per request.
    let before =
        tradeserve_testkit::metric_sum(&replicas[0].addr, "tradeserve_http_responses_total");
    let _ = warnings(&replicas[0], "request failed");
    let body = r#"{"symbol":"AAPL","timestamp":"2025-10-14T15:00:00Z"}"#;
    let refused: Vec<u16> = (0..50)
        .map(|_| predict(&replicas[0].addr, &open_key, body))
        .collect();
    assert!(refused.iter().all(|s| *s == 503), "{refused:?}");
    let after =
        tradeserve_testkit::metric_sum(&replicas[0].addr, "tradeserve_http_responses_total");
    assert!(after >= before + 50.0);
    // One line per 10 s per code (50 before); the bound leaves room for a slow machine.
    let lines = warnings(&replicas[0], "request failed");
    assert!(
        (1..=3).contains(&lines),
        "{lines} warning lines for 50 refusals"
    );
}
