//! A trading halt across a fleet, on the real binary: three replicas sharing the control store
//! and the risk ledger in a real redis-server, about 500 risk-checked decisions/s spread over
//! them, on two symbols. A symbol halt posted to one replica withholds that symbol's orders on
//! every replica from the moment each one serves it (its `tradeserve_halts_active` gauge moves
//! only after requests see the halt) until the release, posted to another replica; the other
//! symbol trades throughout. The test prints how long after the halt call returned the last
//! order in its scope was approved, and how long after the release call returned the last one
//! was refused (the figures in docs/BENCHMARKS.md); it asserts the order of events, never the
//! clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod load_common;

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use load_common::{Api, serial};
use serde_json::{Value, json};
use tradeserve_testkit::{RedisServer, ServiceProcess, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
/// Total risk-checked decisions per second over the three replicas.
const RATE: f64 = 500.0;

/// One answered order.
struct Answer {
    replica: usize,
    in_scope: bool,
    sent: Instant,
    answered: Instant,
    status: u16,
    body: Value,
}

fn start_replica(redis: &str, dir: &std::path::Path, n: usize) -> ServiceProcess {
    let path = |p: &str| dir.join(format!("{p}-{n}")).display().to_string();
    let mut envs = load_common::roomy_risk_envs();
    envs.extend([
        ("TRADESERVE_CONTROL__STORE", "redis".to_owned()),
        ("TRADESERVE_CONTROL__REDIS_URL", redis.to_owned()),
        ("TRADESERVE_CONTROL__REDIS_PREFIX", "halts".to_owned()),
        ("TRADESERVE_LEDGER__STORE", "redis".to_owned()),
        ("TRADESERVE_LEDGER__REDIS_URL", redis.to_owned()),
        ("TRADESERVE_LEDGER__REDIS_PREFIX", "halts".to_owned()),
        ("TRADESERVE_LEDGER__TIMEOUT", "5s".to_owned()),
        ("TRADESERVE_EVENTS__AUDIT_LOG", path("audit.jsonl")),
        ("TRADESERVE_CONTROL__FILE", path("control.json")),
    ]);
    ServiceProcess::start(BIN, &envs)
}

/// Two risk-checked request bodies whose decisions trade shares, on different symbols.
fn two_orders(api: &Api) -> [(String, String); 2] {
    let found = load_common::trading_orders(2, |b| api.call("POST", "/api/v1/predict", b.clone()));
    [0, 1].map(|i| {
        (
            found[i]["symbol"].as_str().unwrap().to_owned(),
            found[i].to_string(),
        )
    })
}

/// Orders at `RATE` over the replicas (open loop: one task per request), alternating the two
/// bodies, until `stop`.
async fn trade(
    urls: Vec<String>,
    bodies: [(String, String); 2],
    stop: Arc<std::sync::atomic::AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
) {
    let client = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE));
    let mut tasks = Vec::new();
    for i in 0usize.. {
        ticker.tick().await;
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let (replica, in_scope) = (i % urls.len(), (i / urls.len()).is_multiple_of(2));
        let body = bodies[usize::from(!in_scope)].1.clone();
        let req = client
            .post(format!("{}/api/v1/predict", urls[replica]))
            .header("content-type", "application/json")
            .body(body);
        let answers = Arc::clone(&answers);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            answers.lock().push(Answer {
                replica,
                in_scope,
                sent,
                answered: Instant::now(),
                status,
                body,
            });
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// When each replica's gauge showed `want` active symbol halts.
fn gauges_show(apis: &[Api], want: u32) -> Vec<Instant> {
    let line = format!("tradeserve_halts_active{{scope=\"symbol\"}} {want}");
    apis.iter()
        .map(|api| {
            eventually(&format!("{} shows {line}", api.url), || {
                api.text("/metrics").contains(&line).then(Instant::now)
            })
        })
        .collect()
}

#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn a_symbol_halt_holds_on_every_replica_until_its_release() {
    let _serial = serial();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    load_common::new_shared_ledger(&redis.url(), "halts");
    let replicas: Vec<ServiceProcess> = (0..3)
        .map(|n| start_replica(&redis.url(), dir.path(), n))
        .collect();
    let apis: Vec<Api> = replicas.iter().map(|r| Api::new(&r.url())).collect();
    let bodies = two_orders(&apis[0]);
    let symbol = bodies[0].0.clone();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let load = std::thread::spawn({
        let urls = replicas.iter().map(|r| r.url()).collect();
        let (bodies, stop, answers) = (bodies.clone(), Arc::clone(&stop), Arc::clone(&answers));
        move || load_common::runtime().block_on(trade(urls, bodies, stop, answers))
    });
    eventually("orders approved on every replica", || {
        let a = answers.lock();
        (0..3)
            .all(|r| a.iter().any(|x| x.replica == r && x.status == 200))
            .then_some(())
    });

    let (s, h) = apis[0].call(
        "POST",
        "/api/v1/halts",
        json!({"scope": {"type": "symbol", "symbol": symbol}, "reason": "fleet drill"}),
    );
    let halted_at = Instant::now();
    assert_eq!(s, 201, "{h}");
    let id = h["halt_id"].as_str().unwrap().to_owned();
    let seen = gauges_show(&apis, 1);
    std::thread::sleep(Duration::from_millis(1500));
    let releasing = Instant::now();
    let (s, r) = apis[1].call("DELETE", &format!("/api/v1/halts/{id}"), json!(null));
    let released_at = Instant::now();
    assert_eq!((s, r["status"].as_str()), (200, Some("released")), "{r}");
    let unseen = gauges_show(&apis, 0);
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.join().unwrap();

    let answers = answers.lock();
    assert!(answers.len() > 1000, "{} orders", answers.len());
    let mut out_of_scope_during = 0;
    for a in answers.iter() {
        let during = a.sent > seen[a.replica] && a.sent < releasing;
        let after = a.sent > unseen[a.replica];
        match (a.in_scope, during, after) {
            // Sent after this replica served the halt, before the release was asked for.
            (true, true, _) => {
                assert_eq!(a.status, 403, "{}", a.body);
                assert_eq!(a.body["risk_validation"]["checks"]["kill_switch"], "fail");
                let w = a.body["risk_validation"]["warnings"].to_string();
                assert!(w.contains(&format!("halted by {id}")), "{w}");
            }
            (true, _, true) => assert_eq!(a.status, 200, "after the release: {}", a.body),
            (false, _, _) => {
                assert_eq!(a.status, 200, "outside the scope: {}", a.body);
                out_of_scope_during += usize::from(during);
            }
            _ => assert!(a.status == 200 || a.status == 403, "{}", a.body),
        }
    }
    assert!(
        out_of_scope_during > 100,
        "{out_of_scope_during} other-symbol orders during the halt"
    );
    // The figures: how long the halt and the release took to hold on the whole fleet.
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let last_approved = answers
        .iter()
        .filter(|a| a.in_scope && a.status == 200 && a.sent < releasing)
        .map(|a| a.answered)
        .max()
        .unwrap();
    let last_refused = answers
        .iter()
        .filter(|a| a.in_scope && a.status == 403)
        .map(|a| a.answered)
        .max()
        .unwrap();
    let halt_gap = last_approved.saturating_duration_since(halted_at);
    let release_gap = last_refused.saturating_duration_since(released_at);
    let seen_max = seen
        .iter()
        .map(|t| t.saturating_duration_since(halted_at))
        .max()
        .unwrap();
    eprintln!(
        "halt: last in-scope approval {:.0} ms after the call returned (gauges on all 3 replicas within {:.0} ms); release: last in-scope refusal {:.0} ms after the call returned; {} orders",
        ms(halt_gap),
        ms(seen_max),
        ms(release_gap),
        answers.len()
    );

    // The changes are control events with their actors, on the replicas that made them.
    for (replica, action) in [(0, "created"), (1, "released")] {
        let log =
            std::fs::read_to_string(dir.path().join(format!("audit.jsonl-{replica}"))).unwrap();
        let found = log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .any(|e| {
                e["subject"] == "halt"
                    && e["action"] == action
                    && e["actor"] == "test"
                    && e["subject_id"] == id.as_str()
            });
        assert!(found, "replica {replica} recorded no {action} event");
    }
    drop(replicas);
}
