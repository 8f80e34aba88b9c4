//! A fleet behind a real load balancer, on the real binary: HAProxy (health checks on
//! `/health/ready`, retries of a request that got no answer) in front of three replicas that
//! share Redis (control store, risk ledger and idempotency keys). An open-loop load of 500
//! decisions a second for 60 s, each order with its own `client_order_id`, runs through a
//! rolling restart of the three replicas (SIGTERM, restart on the same port) and one
//! `kill -9`. Asserted: at least 99.99% of the requests answered with a decision, every
//! acknowledged decision in the replicas' audit logs, and no order decided twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod load_common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tradeserve_loadgen::run_until;
use tradeserve_testkit::{HANG, Haproxy, RedisServer, ServiceProcess, free_port, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
const REPLICAS: usize = 3;
const RATE: f64 = 500.0;
const LOAD_FOR: Duration = Duration::from_secs(60);

/// Where each replica lives across its restarts: its port and its files.
struct Fleet {
    redis: String,
    dir: PathBuf,
    ports: [u16; REPLICAS],
}

impl Fleet {
    fn addr(&self, n: usize) -> String {
        format!("127.0.0.1:{}", self.ports[n])
    }

    fn audit_log(&self, n: usize) -> PathBuf {
        self.dir.join(format!("audit.jsonl-{n}"))
    }

    fn start(&self, n: usize) -> ServiceProcess {
        let mut envs = load_common::roomy_risk_envs();
        envs.extend([
            ("TRADESERVE_CONTROL__STORE", "redis".to_owned()),
            ("TRADESERVE_CONTROL__REDIS_URL", self.redis.clone()),
            ("TRADESERVE_CONTROL__REDIS_PREFIX", "fleet".to_owned()),
            ("TRADESERVE_LEDGER__STORE", "redis".to_owned()),
            ("TRADESERVE_LEDGER__REDIS_URL", self.redis.clone()),
            ("TRADESERVE_LEDGER__REDIS_PREFIX", "fleet".to_owned()),
            ("TRADESERVE_LEDGER__TIMEOUT", "5s".to_owned()),
            // Readiness 503 for a second before the listener closes: the balancer checks
            // every 200 ms and takes a replica out at the first failed check.
            ("TRADESERVE_SERVER__DRAIN_DELAY", "1s".to_owned()),
            (
                "TRADESERVE_EVENTS__AUDIT_LOG",
                self.audit_log(n).display().to_string(),
            ),
            (
                "TRADESERVE_CONTROL__FILE",
                self.dir
                    .join(format!("control.json-{n}"))
                    .display()
                    .to_string(),
            ),
        ]);
        ServiceProcess::start_at(BIN, &self.addr(n), &[], &envs)
    }
}

/// SIGTERM, wait for a clean exit.
fn stop(replica: &mut ServiceProcess) {
    kill(Pid::from_raw(replica.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = tradeserve_testkit::eventually("an exit after SIGTERM", || {
        replica.child.try_wait().unwrap()
    });
    assert!(status.success(), "a drained replica exits 0: {status}");
}

/// Until the replica answers readiness itself, then long enough for the balancer to see it
/// (two checks 200 ms apart).
fn await_ready(fleet: &Fleet, n: usize) {
    wait_for("the restarted replica ready", || ready(&fleet.addr(n)));
    std::thread::sleep(Duration::from_millis(600));
}

fn ready(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(HANG));
    let _ = s.write_all(b"GET /health/ready HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

/// The disturbances, while the load runs: a rolling restart, then one `kill -9` (and its
/// restart); then the load goes on until [`LOAD_FOR`] has passed. Returns the replicas and
/// what was done.
fn disturb(
    fleet: &Fleet,
    mut replicas: Vec<ServiceProcess>,
    started: Instant,
    done: &AtomicBool,
) -> (Vec<ServiceProcess>, Vec<String>) {
    let mut log = Vec::new();
    std::thread::sleep(Duration::from_secs(5));
    for (n, replica) in replicas.iter_mut().enumerate() {
        stop(replica);
        *replica = fleet.start(n);
        await_ready(fleet, n);
        log.push(format!(
            "{:.1} s: replica {n} restarted",
            started.elapsed().as_secs_f64()
        ));
        std::thread::sleep(Duration::from_secs(2));
    }
    replicas[1].child.kill().unwrap();
    replicas[1].child.wait().unwrap();
    log.push(format!(
        "{:.1} s: replica 1 killed (-9)",
        started.elapsed().as_secs_f64()
    ));
    replicas[1] = fleet.start(1);
    await_ready(fleet, 1);
    log.push(format!(
        "{:.1} s: replica 1 back",
        started.elapsed().as_secs_f64()
    ));
    while started.elapsed() < LOAD_FOR {
        std::thread::sleep(Duration::from_millis(100));
    }
    done.store(true, Ordering::Relaxed);
    (replicas, log)
}

/// Every decision event in the audit logs: decision id → client order id.
fn logged(paths: &[PathBuf]) -> (HashMap<String, String>, usize) {
    let (mut events, mut torn) = (HashMap::new(), 0);
    for path in paths {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                torn += 1;
                continue;
            };
            if v["event_type"] != "trading_decision" {
                continue;
            }
            let id = v["decision_id"].as_str().unwrap().to_owned();
            let order = v["client_order_id"].as_str().unwrap_or("").to_owned();
            assert!(
                events.insert(id, order).is_none(),
                "a decision logged twice"
            );
        }
    }
    (events, torn)
}

#[test]
#[ignore = "needs redis-server and haproxy (scripts/test.sh installs them)"]
fn a_fleet_behind_haproxy_answers_through_a_rolling_restart_and_a_kill_9() {
    let _serial = load_common::serial();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    load_common::new_shared_ledger(&redis.url(), "fleet");
    let fleet = Arc::new(Fleet {
        redis: redis.url(),
        dir: dir.path().to_path_buf(),
        ports: [free_port(), free_port(), free_port()],
    });
    let replicas: Vec<ServiceProcess> = (0..REPLICAS).map(|n| fleet.start(n)).collect();
    let balancer = Haproxy::start(&(0..REPLICAS).map(|n| fleet.addr(n)).collect::<Vec<_>>());
    wait_for("the balancer sees every replica", || ready(&balancer.addr));

    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let disturber = {
        let (fleet, done) = (Arc::clone(&fleet), Arc::clone(&done));
        std::thread::spawn(move || disturb(&fleet, replicas, started, &done))
    };
    let mut load = load_common::load(&balancer.url(), RATE, 1_000_000);
    load.connections = 32;
    load.timeout = Duration::from_secs(10);
    load.order_ids = Some("fleet".into());
    let report = load_common::runtime()
        .block_on(run_until(load, Arc::clone(&done)))
        .unwrap();
    let (mut replicas, disturbances) = disturber.join().unwrap();
    for r in &mut replicas {
        stop(r);
    }
    let lb = balancer.backend_stats();
    check(&report, &fleet.dir, lb, &disturbances);
}

fn check(
    report: &tradeserve_loadgen::Report,
    dir: &Path,
    lb: tradeserve_testkit::haproxy::BackendStats,
    disturbances: &[String],
) {
    let paths: Vec<PathBuf> = (0..REPLICAS)
        .map(|n| dir.join(format!("audit.jsonl-{n}")))
        .collect();
    let (events, torn) = logged(&paths);
    let acknowledged: HashSet<&str> = report
        .acknowledged
        .iter()
        .map(|a| a.decision_id.as_str())
        .collect();
    let missing = acknowledged
        .iter()
        .filter(|id| !events.contains_key(**id))
        .count();
    let mut orders: HashMap<&str, usize> = HashMap::new();
    for order in events.values().filter(|o| !o.is_empty()) {
        *orders.entry(order.as_str()).or_default() += 1;
    }
    let decided_twice = orders.values().filter(|n| **n > 1).count();
    let answered = report.decisions;
    let ratio = answered as f64 / report.requests as f64;
    eprintln!(
        "fleet: {} requests in {:.1} s, {answered} answered with a decision ({:.4}%), statuses {:?}, \
         transport errors {:?}; client p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; HAProxy retries {}, \
         redispatches {}, errors {}; {} decision events logged ({torn} torn lines), {missing} \
         acknowledged missing, {decided_twice} orders decided twice; {disturbances:?}",
        report.requests,
        report.duration_s,
        ratio * 100.0,
        report.statuses,
        report.errors,
        report.latency_ms.p50,
        report.latency_ms.p99,
        report.latency_ms.max,
        lb.retries,
        lb.redispatches,
        lb.errors,
        events.len(),
    );
    assert_eq!(disturbances.len(), REPLICAS + 2, "{disturbances:?}");
    assert!(
        report.requests as f64 >= RATE * LOAD_FOR.as_secs_f64() * 0.95,
        "the load ran for the whole minute"
    );
    assert_eq!(
        missing, 0,
        "acknowledged decisions missing from the audit logs"
    );
    assert_eq!(decided_twice, 0, "orders decided (and booked) twice");
    assert_eq!(
        acknowledged.len() as u64,
        answered,
        "one decision per answered request"
    );
    assert!(
        ratio >= 0.9999,
        "answered {answered} of {}",
        report.requests
    );
}
