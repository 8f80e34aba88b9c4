//! Experiments and rollouts on the running binary under open-loop load: the observed split, a
//! full rollout with no failed request, a rollback in force from the next decision on one
//! replica and followed by a second replica sharing a real Redis, and a bad candidate rolled
//! back by its gate. The assertions hold behaviour (orders of events, counts, statuses);
//! timings are printed (stderr) for `docs/BENCHMARKS.md`, never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tradeserve_core::experiment;
use tradeserve_loadgen::run;
use tradeserve_testkit::{RedisServer, ServiceProcess, eventually, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

mod load_common;
use load_common::{Api, assert_no_failures, load, quick_gates, serial, stop_load};
fn env(dir: &Path, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (
            "TRADESERVE_EVENTS__AUDIT_LOG",
            dir.join("audit.jsonl").display().to_string(),
        ),
        (
            "TRADESERVE_CONTROL__FILE",
            dir.join("control.json").display().to_string(),
        ),
        ("TRADESERVE_CONTROL__GATE_INTERVAL", "200ms".to_owned()),
        ("TRADESERVE_CONTROL__POLL_INTERVAL", "500ms".to_owned()),
    ];
    for (k, val) in extra {
        let key: &'static str = Box::leak(k.to_string().into_boxed_str());
        v.push((key, (*val).to_owned()));
    }
    v
}

#[test]
#[ignore = "load test on the binary (scripts/test.sh runs it)"]
fn observed_split_is_within_two_points_over_ten_thousand_decisions() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = ServiceProcess::start(BIN, &env(dir.path(), &[]));
    let url = server.url();
    let api = Api::new(&url);
    let spec = json!({"experiment_id": "exp-split", "role": "bull_specialist", "control_model_version": "1",
        "treatment_model_version": "2", "traffic_split": 0.3, "bucketing": "decision"});
    let (s, e) = api.call("POST", "/api/v1/experiments", spec);
    assert_eq!(s, 201, "{e}");
    let report = api.rt.block_on(run(load(&url, 1000.0, 10_000))).unwrap();
    assert_no_failures(&report);
    let (_, r) = api.call("GET", "/api/v1/experiments/exp-split/report", Value::Null);
    let n = |arm: &str| r["arms"][arm]["decisions"].as_u64().unwrap();
    assert_eq!(n("control") + n("treatment"), 10_000, "{r}");
    let share = r["observed_treatment_share"].as_f64().unwrap();
    eprintln!("observed treatment share {share:.4} at split 0.30 over 10,000 decisions");
    assert!((share - 0.3).abs() <= 0.02, "share {share}");

    // Then units of symbol × day, under load: each unit keeps one arm for all its decisions.
    let (s, _) = api.call("DELETE", "/api/v1/experiments/exp-split", Value::Null);
    assert_eq!(s, 200);
    let spec = json!({"experiment_id": "exp-units", "role": "bear_specialist", "control_model_version": "1",
        "treatment_model_version": "2", "traffic_split": 0.5});
    let (s, e) = api.call("POST", "/api/v1/experiments", spec);
    assert_eq!(s, 201, "{e}");
    let mut timed = load(&url, 1000.0, 4_000);
    // Point-in-time requests spread over the data's trading days.
    timed.symbols = [
        "AAPL", "MSFT", "NVDA", "SPY", "TSLA", "AMZN", "META", "QQQ", "JPM", "GOOGL",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let report = api.rt.block_on(async {
        let mut reports = Vec::new();
        for day in ["2025-10-07", "2025-10-10", "2025-10-15", "2025-10-20"] {
            let mut c = timed.clone();
            c.requests = 1_000;
            let mut extra = serde_json::Map::new();
            extra.insert("timestamp".into(), json!(format!("{day}T17:00:00Z")));
            c.extra = Some(extra);
            reports.push(run(c).await.unwrap());
        }
        reports
    });
    for r in &report {
        assert_no_failures(r);
    }

    // In the audit trail every decision's arm is the published rule applied to its unit.
    drop(server);
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let mut checked = 0;
    let mut unit_arm: std::collections::BTreeMap<String, String> = Default::default();
    let mut unit_decisions = 0;
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        if e["event_type"] != "trading_decision" {
            continue;
        }
        if e["experiment"]["id"] == "exp-units" {
            let day = &e["features_as_of"].as_str().unwrap()[..10];
            let key = format!("{}:{day}", e["symbol"].as_str().unwrap());
            let bucket = experiment::bucket("exp-units", &key);
            assert_eq!(e["experiment"]["bucket"], bucket, "{key}");
            let arm = e["experiment"]["arm"].as_str().unwrap().to_owned();
            let first = unit_arm.entry(key.clone()).or_insert_with(|| arm.clone());
            assert_eq!(*first, arm, "unit {key} changed arm");
            unit_decisions += 1;
            continue;
        }
        if e["experiment"]["id"] != "exp-split" {
            continue;
        }
        let id = e["decision_id"].as_str().unwrap();
        let bucket = experiment::bucket("exp-split", id);
        assert_eq!(e["experiment"]["bucket"], bucket);
        let arm = if f64::from(bucket) < 3000.0 {
            "treatment"
        } else {
            "control"
        };
        assert_eq!(e["experiment"]["arm"], arm);
        assert_eq!(
            e["model_versions"]["bull_specialist"],
            if arm == "treatment" { "2" } else { "1" }
        );
        checked += 1;
    }
    // SIGKILL may lose the last unflushed second of the log; the rest is checked.
    assert!(checked >= 9_000, "{checked}");
    assert!(unit_decisions >= 3_000, "{unit_decisions}");
    assert_eq!(unit_arm.len(), 40, "10 symbols × 4 days: {unit_arm:?}");
    let treated = unit_arm.values().filter(|a| *a == "treatment").count();
    eprintln!(
        "symbol_date: {unit_decisions} decisions in 40 units, {treated} units treated, none changed arm"
    );
}

#[test]
#[ignore = "load test on the binary (scripts/test.sh runs it)"]
fn a_full_rollout_under_load_fails_no_request() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = ServiceProcess::start(BIN, &env(dir.path(), &[]));
    let url = server.url();
    let api = Api::new(&url);
    let loader = api.load_until_stopped(400.0);
    std::thread::sleep(Duration::from_millis(300));
    // Per-decision bucketing: with `symbol_date`, eight symbols can all hash above the 10%
    // canary on some calendar days, and the canary would get no traffic at all.
    let spec = json!({"rollout_id": "ro-full", "candidate": {"bull_specialist": "2", "bear_specialist": "2",
        "sideways_specialist": "2", "meta_controller": "2"}, "gates": quick_gates(),
        "bucketing": "decision"});
    let (s, r) = api.call("POST", "/api/v1/rollouts", spec);
    assert_eq!(s, 201, "{r}");
    let started = Instant::now();
    let done = api.wait_stage("ro-full", "completed");
    eprintln!(
        "shadow → completed in {:.1} s under load",
        started.elapsed().as_secs_f64()
    );
    let report = stop_load(loader);
    assert_no_failures(&report);
    let stages: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["shadow", "canary", "partial", "full", "completed"]);
    for t in &done["history"].as_array().unwrap()[1..] {
        assert_eq!(
            (&t["actor"], &t["reason"]),
            (&json!("gate"), &json!("gate passed"))
        );
    }
    let (_, m) = api.call("GET", "/api/v1/models", Value::Null);
    for role in [
        "bull_specialist",
        "bear_specialist",
        "sideways_specialist",
        "meta_controller",
    ] {
        assert_eq!(m["models"][role]["version"], "2", "{m}");
    }
    assert_eq!(m["models"]["regime_detector"]["version"], "1");
}

#[test]
#[ignore = "load test on the binary (scripts/test.sh runs it)"]
fn rollback_under_load_is_in_force_from_the_next_decision() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = ServiceProcess::start(BIN, &env(dir.path(), &[]));
    let url = server.url();
    let api = Api::new(&url);
    let spec = json!({"rollout_id": "ro-rb", "candidate": {"bull_specialist": "2"}, "auto_promote": false});
    let (s, _) = api.call("POST", "/api/v1/rollouts", spec);
    assert_eq!(s, 201);
    for _ in 0..3 {
        let (s, _) = api.call("POST", "/api/v1/rollouts/ro-rb/promote", Value::Null);
        assert_eq!(s, 200);
    }
    let loader = api.load_until_stopped(500.0);
    std::thread::sleep(Duration::from_secs(2));
    let d = api.decide();
    assert_eq!(
        d["metadata"]["rollout"]["arm"], "treatment",
        "full stage: {d}"
    );
    let t0 = Instant::now();
    let (s, _) = api.call(
        "POST",
        "/api/v1/rollouts/ro-rb/rollback",
        json!({"reason": "drill"}),
    );
    assert_eq!(s, 200);
    let answered = t0.elapsed();
    // Instant on one replica: the rollback is in force when its answer comes, so the very
    // next decision, and every one after it, is control (an order, not a time: the time is
    // printed for docs/BENCHMARKS.md).
    for _ in 0..50 {
        let d = api.decide();
        assert!(d["metadata"]["rollout"].is_null(), "{d}");
        assert_eq!(d["metadata"]["model_versions"]["bull_specialist"], "1");
    }
    eprintln!(
        "one replica: rollback API answered in {:.2} ms, in force from the next decision",
        answered.as_secs_f64() * 1e3,
    );
    assert_no_failures(&stop_load(loader));
}

#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn two_replicas_sharing_redis_converge_on_a_rollback() {
    let _serial = serial();
    let redis = RedisServer::start();
    let redis_env = [
        ("TRADESERVE_CONTROL__STORE", "redis"),
        (
            "TRADESERVE_CONTROL__REDIS_URL",
            &*Box::leak(redis.url().into_boxed_str()),
        ),
    ];
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = ServiceProcess::start(BIN, &env(da.path(), &redis_env));
    let b = ServiceProcess::start(BIN, &env(db.path(), &redis_env));
    let (api_a, api_b) = (Api::new(&a.url()), Api::new(&b.url()));
    let spec = json!({"rollout_id": "ro-shared", "candidate": {"bull_specialist": "2"}, "auto_promote": false});
    let (s, r) = api_a.call("POST", "/api/v1/rollouts", spec);
    assert_eq!(s, 201, "{r}");
    for _ in 0..3 {
        let (s, _) = api_a.call("POST", "/api/v1/rollouts/ro-shared/promote", Value::Null);
        assert_eq!(s, 200);
    }
    // Replica B picks the change up from Redis (and loads the candidate) by itself.
    wait_for("replica B to see the rollout", || {
        api_b.decide()["metadata"]["rollout"]["arm"] == "treatment"
    });
    let (_, rb) = api_b.call("GET", "/api/v1/rollouts/ro-shared", Value::Null);
    assert_eq!(rb["stage"], "full");

    let loader = api_b.load_until_stopped(300.0);
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let (s, _) = api_a.call(
        "POST",
        "/api/v1/rollback",
        json!({"reason": "kill switch drill"}),
    );
    assert_eq!(s, 200);
    let on_a = {
        let d = api_a.decide();
        assert!(d["metadata"]["rollout"].is_null(), "{d}");
        t0.elapsed()
    };
    // Replica B follows through Redis by itself (how soon is printed, not asserted).
    let on_b = eventually("replica B back on control", || {
        api_b.decide()["metadata"]["rollout"]
            .is_null()
            .then(|| t0.elapsed())
    });
    for _ in 0..30 {
        let d = api_b.decide();
        assert!(d["metadata"]["rollout"].is_null(), "{d}");
    }
    eprintln!(
        "two replicas: kill switch on A; A control after {:.1} ms, B after {:.1} ms",
        on_a.as_secs_f64() * 1e3,
        on_b.as_secs_f64() * 1e3
    );
    assert_no_failures(&stop_load(loader));
}

/// Two real replicas sharing Redis split the load of an experiment: the report counts both;
/// B publishes only at shutdown here (its interval is an hour), so A's report holds B's share
/// exactly when B stopped gracefully.
#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn the_fleet_report_counts_every_replica_including_a_stopped_ones_last_share() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _serial = serial();
    let redis = RedisServer::start();
    let url: &'static str = Box::leak(redis.url().into_boxed_str());
    let shared = [
        ("TRADESERVE_CONTROL__STORE", "redis"),
        ("TRADESERVE_CONTROL__REDIS_URL", url),
        ("TRADESERVE_SERVER__DRAIN_DELAY", "0s"),
    ];
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut env_a = shared.to_vec();
    env_a.push(("TRADESERVE_CONTROL__FLEET_INTERVAL", "200ms"));
    let mut env_b = shared.to_vec();
    env_b.push(("TRADESERVE_CONTROL__FLEET_INTERVAL", "1h"));
    let a = ServiceProcess::start(BIN, &env(da.path(), &env_a));
    let mut b = ServiceProcess::start(BIN, &env(db.path(), &env_b));
    let (api_a, api_b) = (Api::new(&a.url()), Api::new(&b.url()));
    let spec = json!({"experiment_id": "exp-fleet", "role": "bull_specialist", "control_model_version": "1",
        "treatment_model_version": "2", "traffic_split": 0.5, "bucketing": "decision"});
    let (s, e) = api_a.call("POST", "/api/v1/experiments", spec);
    assert_eq!(s, 201, "{e}");
    // B picks the experiment up from Redis; its decisions in the experiment count too.
    let mut probes = 0u64;
    wait_for("replica B to see the experiment", || {
        !api_b.decide()["metadata"]["experiment"].is_null()
    });
    probes += 1;
    let on_b = api_b.load_in_background(500.0, 1_000);
    let on_a = api_a
        .rt
        .block_on(run(load(&a.url(), 500.0, 1_500)))
        .unwrap();
    assert_no_failures(&on_a);
    assert_no_failures(&on_b.join().unwrap());
    let decisions = |r: &Value| {
        let n = |arm: &str| r["arms"][arm]["decisions"].as_u64().unwrap();
        n("control") + n("treatment")
    };
    let (_, r) = api_a.call("GET", "/api/v1/experiments/exp-fleet/report", Value::Null);
    assert_eq!(
        (decisions(&r), &r["scope"]),
        (1_500, &json!("fleet")),
        "{r}"
    );

    kill(Pid::from_raw(b.child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(b.child.wait().unwrap().success());
    let (_, r) = api_a.call("GET", "/api/v1/experiments/exp-fleet/report", Value::Null);
    assert_eq!(decisions(&r), 1_500 + 1_000 + probes, "{r}");
    assert_eq!(r["replicas"].as_array().unwrap().len(), 2, "{r}");
    let share = r["observed_treatment_share"].as_f64().unwrap();
    eprintln!(
        "fleet report over two replicas: {} decisions, treatment share {share:.3}",
        decisions(&r)
    );
    assert!((share - 0.5).abs() < 0.05, "{share}");
}

#[test]
#[ignore = "needs the test harness's Python venv (scripts/test.sh)"]
fn an_always_hold_candidate_is_rolled_back_by_its_gate_under_load() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = tradeserve_testkit::models_with_degraded(&repo, dir.path(), &[("9", "hold")]);
    let models_env = models.display().to_string();
    let server = ServiceProcess::start(
        BIN,
        &env(dir.path(), &[("TRADESERVE_MODELS__DIR", &models_env)]),
    );
    let url = server.url();
    let api = Api::new(&url);
    let loader = api.load_until_stopped(400.0);
    std::thread::sleep(Duration::from_millis(300));
    let mut gates = quick_gates();
    gates["min_agreement"] = json!(0.6);
    gates["durations"]["shadow"] = json!("30s");
    let spec = json!({"rollout_id": "ro-bad", "candidate": {"bull_specialist": "9", "bear_specialist": "9",
        "sideways_specialist": "9"}, "gates": gates});
    let (s, r) = api.call("POST", "/api/v1/rollouts", spec);
    assert_eq!(s, 201, "{r}");
    let t0 = Instant::now();
    let r = api.wait_stage("ro-bad", "rolled_back");
    eprintln!(
        "always-HOLD candidate rolled back by its gate {:.2} s after the rollout began",
        t0.elapsed().as_secs_f64()
    );
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["from"], "shadow");
    assert_eq!(last["actor"], "gate");
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.starts_with("gate failed: agreement"), "{reason}");
    // It never served a decision: shadow only, then control.
    let d = api.decide();
    assert!(d["metadata"]["rollout"].is_null());
    assert_no_failures(&stop_load(loader));
}
