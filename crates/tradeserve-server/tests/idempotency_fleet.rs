//! Idempotent decisions across a fleet, on the real binary: two replicas sharing the risk
//! ledger in a real redis-server (so the keys are kept there too). 1,000 orders each sent
//! twice with the same `client_order_id` — half of the repeats to the other replica — then
//! 100 more sent twice at the same moment, one copy to each replica: exactly one booking and
//! one decision event per id (the ledger's order count and the two audit logs), every repeat
//! answered with the first decision.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod load_common;

use std::collections::BTreeSet;

use load_common::{Api, serial};
use serde_json::{Value, json};
use tradeserve_testkit::{RedisServer, ServiceProcess};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
const SEQUENTIAL: usize = 1000;
const CONCURRENT: usize = 100;

fn start_replica(redis: &str, dir: &std::path::Path, n: usize) -> ServiceProcess {
    let path = |p: &str| dir.join(format!("{p}-{n}")).display().to_string();
    let mut envs = load_common::roomy_risk_envs();
    envs.extend([
        ("TRADESERVE_LEDGER__STORE", "redis".to_owned()),
        ("TRADESERVE_LEDGER__REDIS_URL", redis.to_owned()),
        ("TRADESERVE_LEDGER__REDIS_PREFIX", "idem".to_owned()),
        ("TRADESERVE_LEDGER__TIMEOUT", "5s".to_owned()),
        ("TRADESERVE_EVENTS__AUDIT_LOG", path("audit.jsonl")),
        ("TRADESERVE_CONTROL__FILE", path("control.json")),
    ]);
    ServiceProcess::start(BIN, &envs)
}

async fn send(client: &reqwest::Client, url: &str, body: &Value, id: &str) -> (u16, Value) {
    let mut body = body.clone();
    body["client_order_id"] = json!(id);
    let res = client
        .post(format!("{url}/api/v1/predict"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Each id sent, answered, then sent again (to the other replica for even ids); 16 at a time.
async fn sequential(urls: [String; 2], body: Value) {
    let client = reqwest::Client::new();
    let mut workers = Vec::new();
    for w in 0..16 {
        let (client, urls, body) = (client.clone(), urls.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            for i in (w..SEQUENTIAL).step_by(16) {
                let id = format!("SEQ-{i}");
                let (first, again) = (i % 2, (i % 2) ^ usize::from(i % 4 < 2));
                let (s, d) = send(&client, &urls[first], &body, &id).await;
                assert_eq!(s, 200, "{d}");
                assert!(d.get("repeat").is_none(), "{d}");
                let (s, r) = send(&client, &urls[again], &body, &id).await;
                assert_eq!((s, &r["repeat"]), (200, &json!(true)), "{r}");
                assert_eq!(r["decision_id"], d["decision_id"]);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

/// Each id sent to both replicas at once: one is decided, the other is its repeat or is
/// told the first is still being decided (409 `idempotency_in_flight`).
async fn concurrent(urls: [String; 2], body: Value) -> (usize, usize) {
    let client = reqwest::Client::new();
    let (mut repeats, mut in_flight) = (0, 0);
    for i in 0..CONCURRENT {
        let id = format!("PAR-{i}");
        let (a, b) = tokio::join!(
            send(&client, &urls[0], &body, &id),
            send(&client, &urls[1], &body, &id)
        );
        let fresh = [&a, &b]
            .iter()
            .filter(|(s, d)| *s == 200 && d.get("repeat").is_none())
            .count();
        assert_eq!(fresh, 1, "{id}: {a:?} {b:?}");
        for (s, d) in [&a, &b] {
            match (s, d["error"]["code"].as_str()) {
                (200, _) if d["repeat"] == true => repeats += 1,
                (409, Some("idempotency_in_flight")) => in_flight += 1,
                (200, _) => {}
                other => panic!("{id}: {other:?} {d}"),
            }
        }
    }
    (repeats, in_flight)
}

#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn every_order_sent_twice_to_the_fleet_is_booked_and_recorded_once() {
    let _serial = serial();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    load_common::new_shared_ledger(&redis.url(), "idem");
    let replicas = [0, 1].map(|n| start_replica(&redis.url(), dir.path(), n));
    let urls = [replicas[0].url(), replicas[1].url()];
    let api = Api::new(&urls[0]);
    let body = load_common::trading_orders(1, |b| api.call("POST", "/api/v1/predict", b.clone()))
        .remove(0);

    let rt = load_common::runtime();
    rt.block_on(sequential(urls.clone(), body.clone()));
    let (repeats, in_flight) = rt.block_on(concurrent(urls.clone(), body));
    eprintln!("sent at once: {repeats} answered as repeats, {in_flight} as in flight");
    assert_eq!(repeats + in_flight, CONCURRENT);

    // Bookings: the shared ledger's count of applied orders.
    let seq: String = rt.block_on(async {
        let client = tradeserve_testkit::redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        tradeserve_testkit::redis::cmd("HGET")
            .arg("idem:ledger")
            .arg("seq")
            .query_async(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(seq, (SEQUENTIAL + CONCURRENT).to_string());
    // Decision events: one per id over both audit logs.
    drop(replicas);
    let mut ids = Vec::new();
    for n in 0..2 {
        let log = std::fs::read_to_string(dir.path().join(format!("audit.jsonl-{n}"))).unwrap();
        for e in log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
        {
            if let Some(id) = e["client_order_id"].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len(), distinct.len()),
        (SEQUENTIAL + CONCURRENT, SEQUENTIAL + CONCURRENT)
    );
}
