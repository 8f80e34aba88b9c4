//! Experiment and rollout measurements for the whole fleet (`control.store = "redis"`, a real
//! redis-server): two replicas split the load, publish their shares, and either replica's
//! report equals the sum of what clients received from both; a restarted replica's old share
//! keeps counting; a rollout gate passes on the fleet's decisions where one replica's share
//! alone would wait; and with the fleet's shares unreadable the report says so and a pass waits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use common::{Harness, call_with, harness_with, predict};
use serde_json::{Value, json};
use tradeserve_core::rollout::{Rollout, Verdict};
use tradeserve_server::config::StoreKind;
use tradeserve_testkit::RedisServer;

fn replica(url: &str, prefix: &str, derive_outcomes: bool) -> Harness {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    harness_with(move |c| {
        c.control.store = StoreKind::Redis;
        c.control.redis_url = url;
        c.control.redis_prefix = prefix;
        c.control.derive_outcomes = derive_outcomes;
    })
}

async fn post(h: &Harness, path: &str, body: &str) -> (StatusCode, Value) {
    call_with(h, "POST", path, &[("x-actor", "alice")], body).await
}

async fn get(h: &Harness, path: &str) -> Value {
    let (s, v) = call_with(h, "GET", path, &[], "").await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v
}

/// What clients received, per arm: decisions and actions; and the outcomes posted.
#[derive(Default, Debug, PartialEq)]
struct Seen {
    decisions: BTreeMap<String, u64>,
    actions: BTreeMap<(String, String), u64>,
    returns: BTreeMap<String, Vec<f64>>,
}

const SYMBOLS: [&str; 6] = ["AAPL", "MSFT", "NVDA", "SPY", "TSLA", "AMZN"];

/// A traded decision awaiting its outcome: id, arm, and the return the test will post.
struct Trade {
    id: String,
    arm: String,
    r: f64,
}

/// `n` decisions from `h` over a few symbols and hours; returns the traded ones.
async fn drive(h: &Harness, n: usize, seen: &mut Seen) -> Vec<Trade> {
    let mut trades = Vec::new();
    for i in 0..n {
        let body = format!(
            r#"{{"symbol":"{}","timestamp":"2025-10-20T{}:30:00Z","risk_check":false}}"#,
            SYMBOLS[i % SYMBOLS.len()],
            14 + i % 6
        );
        let (s, d) = predict(h, &body).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert_eq!(d["metadata"]["experiment"]["id"], "exp-fleet");
        let arm = d["metadata"]["experiment"]["arm"]
            .as_str()
            .unwrap()
            .to_owned();
        *seen.decisions.entry(arm.clone()).or_default() += 1;
        let action = d["action"].as_str().unwrap().to_owned();
        *seen
            .actions
            .entry((arm.clone(), action.clone()))
            .or_default() += 1;
        if action != "HOLD" {
            trades.push(Trade {
                id: d["decision_id"].as_str().unwrap().to_owned(),
                arm,
                r: ((i * 37 % 11) as f64 - 5.0) / 1000.0,
            });
        }
    }
    trades
}

/// Post a trade's outcome to `h`: the status and the error code, if any.
async fn post_outcome(h: &Harness, t: &Trade) -> (StatusCode, Value) {
    let body = format!(r#"{{"decision_id":"{}","realized_return":{}}}"#, t.id, t.r);
    post(h, "/api/v1/outcomes", &body).await
}

/// Post `trades`' outcomes to `h`, each credited once; noted in `seen`.
async fn credit(h: &Harness, trades: &[Trade], seen: &mut Seen) {
    for t in trades {
        let (s, v) = post_outcome(h, t).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["credited"][0]["arm"], t.arm.as_str(), "{v}");
        // The return of the position the decision opened (its direction already in it).
        seen.returns.entry(t.arm.clone()).or_default().push(t.r);
    }
}

/// The report's figures hold what clients received, arm by arm, exactly.
fn assert_report_is(report: &Value, seen: &Seen) {
    for arm in ["control", "treatment"] {
        let a = &report["arms"][arm];
        let n = seen.decisions.get(arm).copied().unwrap_or(0);
        assert_eq!(a["decisions"].as_u64(), Some(n), "{arm}: {report}");
        for action in ["BUY", "SELL", "HOLD"] {
            let k = seen
                .actions
                .get(&(arm.to_owned(), action.to_owned()))
                .copied()
                .unwrap_or(0);
            let share = a["action_mix"][action].as_f64().unwrap();
            assert!(
                (share - k as f64 / n as f64).abs() < 1e-12,
                "{arm} {action}: {share} vs {k}/{n}"
            );
        }
        let returns = seen.returns.get(arm).cloned().unwrap_or_default();
        assert_eq!(a["outcomes"].as_u64(), Some(returns.len() as u64), "{arm}");
        if !returns.is_empty() {
            let mean = returns.iter().sum::<f64>() / returns.len() as f64;
            let got = a["mean_return"].as_f64().unwrap();
            assert!((got - mean).abs() < 1e-12, "{arm}: mean {got} vs {mean}");
            let wins = returns.iter().filter(|r| **r > 0.0).count() as f64;
            let rate = a["win_rate"].as_f64().unwrap();
            assert!((rate - wins / returns.len() as f64).abs() < 1e-12);
        }
    }
}

fn merge(a: &Seen, b: &Seen) -> Seen {
    let mut m = Seen::default();
    for s in [a, b] {
        for (k, v) in &s.decisions {
            *m.decisions.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &s.actions {
            *m.actions.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &s.returns {
            m.returns.entry(k.clone()).or_default().extend(v);
        }
    }
    m
}

async fn publish(h: &Harness) -> usize {
    h.service
        .state
        .control
        .publish_measurements(false)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn the_experiment_report_is_the_sum_of_every_replica() {
    let redis = RedisServer::start();
    let (a, b) = (
        replica(&redis.url(), "fleet1", false),
        replica(&redis.url(), "fleet1", false),
    );
    let spec = r#"{"experiment_id":"exp-fleet","role":"bull_specialist","control_model_version":"1","treatment_model_version":"2","traffic_split":0.5,"bucketing":"decision"}"#;
    let (s, v) = post(&a, "/api/v1/experiments", spec).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(b.service.state.control.refresh().await.unwrap());

    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let trades_a = drive(&a, 120, &mut seen_a).await;
    let trades_b = drive(&b, 80, &mut seen_b).await;
    assert!(trades_a.len() > 12 && trades_b.len() > 4, "few trades");
    // B's outcomes posted to B before it publishes: credited there, no Redis needed.
    credit(&b, &trades_b, &mut seen_b).await;

    // Before B publishes, A's report is A's share (its own, live) and says who is in it.
    let report = get(&a, "/api/v1/experiments/exp-fleet/report").await;
    assert_eq!(report["scope"], "fleet");
    assert_report_is(&report, &seen_a);
    assert_eq!(report["replicas"].as_array().unwrap().len(), 1, "{report}");

    // An outcome for A's decision posted to B before A published it: B cannot know it yet.
    let (s, v) = post_outcome(&b, &trades_a[0]).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let sent = a.service.state.arms.publish_awaiting().await.unwrap();
    assert_eq!(sent, trades_a.len());
    assert_eq!(b.service.state.arms.publish_awaiting().await.unwrap(), 0);
    // Now half of A's outcomes arrive at B (a load balancer), half at A; the last one is kept.
    let (last, rest) = trades_a.split_last().unwrap();
    let (to_b, to_a) = rest.split_at(rest.len() / 2);
    credit(&b, to_b, &mut seen_b).await;
    credit(&a, to_a, &mut seen_a).await;
    // Posted again, to either replica: credited once.
    for (h, t) in [(&a, &to_b[0]), (&b, &to_a[0]), (&a, &to_a[1])] {
        let (s, v) = post_outcome(h, t).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "outcome_exists");
    }

    assert_eq!(publish(&a).await, 1);
    assert_eq!(publish(&b).await, 1);
    // Nothing new: nothing sent.
    assert_eq!(publish(&a).await, 0);
    let both = merge(&seen_a, &seen_b);
    for h in [&a, &b] {
        let report = get(h, "/api/v1/experiments/exp-fleet/report").await;
        assert_eq!(
            (&report["scope"], &report["fleet_error"]),
            (&json!("fleet"), &Value::Null)
        );
        assert_report_is(&report, &both);
        let mut shares: Vec<u64> = report["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["decisions"].as_u64().unwrap())
            .collect();
        shares.sort_unstable();
        assert_eq!(shares, [80, 120], "{report}");
        let total = both.decisions.values().sum::<u64>() as f64;
        let share = report["observed_treatment_share"].as_f64().unwrap();
        assert!((share - both.decisions["treatment"] as f64 / total).abs() < 1e-12);
        // The latency percentiles are the merged histogram's: within the replicas' own.
        let p99 = report["arms"]["control"]["latency_ms"]["p99"]
            .as_f64()
            .unwrap();
        let own: Vec<f64> = [&a, &b]
            .iter()
            .map(|r| {
                let s = r
                    .service
                    .state
                    .control
                    .experiment_stats("exp-fleet")
                    .unwrap();
                s.arm(tradeserve_core::experiment::Arm::Control)
                    .snapshot()
                    .latency_ms
                    .p99
                    .unwrap()
            })
            .collect();
        assert!(
            p99 >= own[0].min(own[1]) && p99 <= own[0].max(own[1]),
            "{p99} vs {own:?}"
        );
    }

    // B stops; a new replica starts (a new id): what B served still counts.
    drop(b);
    let c = replica(&redis.url(), "fleet1", false);
    c.service.state.control.refresh().await.unwrap();
    let mut seen_c = Seen::default();
    drive(&c, 30, &mut seen_c).await;
    assert_eq!(publish(&c).await, 1);
    let report = get(&a, "/api/v1/experiments/exp-fleet/report").await;
    assert_report_is(&report, &merge(&both, &seen_c));
    assert_eq!(report["replicas"].as_array().unwrap().len(), 3);

    // Redis gone: a published decision cannot be claimed, so it is not credited (503, retry).
    let port = redis.port;
    drop(redis);
    let (s, v) = post_outcome(&a, last).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "outcome_unavailable");
    let report = get(&a, "/api/v1/experiments/exp-fleet/report").await;
    assert_eq!(report["scope"], "this replica");
    assert!(report["fleet_error"].is_string(), "{report}");
    assert_report_is(&report, &seen_a);

    // Decisions made meanwhile are published once Redis is back, then creditable anywhere.
    let mut seen_late = Seen::default();
    let late = drive(&a, 30, &mut seen_late).await;
    assert!(a.service.state.arms.publish_awaiting().await.is_err());
    let _redis = RedisServer::start_on(port);
    let mut sent = Err(tradeserve_core::ports::FleetError::Unavailable(
        String::new(),
    ));
    for _ in 0..50 {
        sent = a.service.state.arms.publish_awaiting().await;
        if sent.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sent, Ok(late.len()));
    credit(&c, &late, &mut seen_late).await;
}

fn rollout_spec() -> String {
    json!({
        "rollout_id": "ro-fleet",
        "candidate": {"bull_specialist": "2", "sideways_specialist": "2"},
        "auto_promote": false,
        "bucketing": "decision",
        "gates": {
            "min_decisions": 50,
            "durations": {"shadow": "1s", "canary": "1s", "partial": "1s", "full": "1s"},
            "max_latency_increase": 100.0,
            "max_error_rate": 0.0,
            "min_agreement": 0.0,
            "outcome_alpha": 0.0
        }
    })
    .to_string()
}

/// Decisions on `h` until `n` of them went to the candidate.
async fn candidate_decisions(h: &Harness, n: usize) {
    let mut got = 0;
    for i in 0.. {
        let body = format!(
            r#"{{"symbol":"{}","risk_check":false}}"#,
            SYMBOLS[i % SYMBOLS.len()]
        );
        let (s, d) = predict(h, &body).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        if d["metadata"]["rollout"]["arm"] == "treatment" {
            got += 1;
            if got == n {
                return;
            }
        }
    }
}

fn active(h: &Harness) -> Rollout {
    h.service
        .state
        .control
        .view()
        .active_rollout()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn a_rollout_gate_judges_the_fleet_and_waits_when_it_cannot_see_it() {
    let redis = RedisServer::start();
    let (a, b) = (
        replica(&redis.url(), "fleet2", true),
        replica(&redis.url(), "fleet2", true),
    );
    let (s, v) = post(&a, "/api/v1/rollouts", &rollout_spec()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for _ in 0..2 {
        let (s, v) = post(&a, "/api/v1/rollouts/ro-fleet/promote", "").await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    assert_eq!(v_stage(&a), "partial");
    assert!(b.service.state.control.refresh().await.unwrap());
    assert_eq!(v_stage(&b), "partial");

    // 30 candidate decisions on each replica: 60 in the fleet against a minimum of 50.
    candidate_decisions(&a, 30).await;
    candidate_decisions(&b, 30).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let control = &a.service.state.control;
    let (inputs, error) = control.gate_inputs(&active(&a)).await;
    assert_eq!((inputs.candidate_decisions, error), (30, None));
    let report = control.tick_gates().await.unwrap();
    assert_eq!(report.verdict, Verdict::Wait, "{report:?}");

    publish(&a).await;
    publish(&b).await;
    let (inputs, _) = control.gate_inputs(&active(&a)).await;
    assert_eq!(inputs.candidate_decisions, 60);
    let report = control.tick_gates().await.unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{report:?}");
    let r = get(&b, "/api/v1/rollouts/ro-fleet").await;
    assert_eq!(r["stage_stats"]["scope"], "fleet");
    assert_eq!(r["stage_stats"]["replicas"], 2);
    assert_eq!(r["stage_stats"]["candidate"]["decisions"], 60);

    // Redis gone: B sees only its own share; its report and gate say so, and a pass waits.
    drop(redis);
    candidate_decisions(&b, 25).await;
    let report = b.service.state.control.tick_gates().await.unwrap();
    assert_eq!(report.verdict, Verdict::Wait, "{report:?}");
    let fleet = report
        .checks
        .iter()
        .find(|c| c.name == tradeserve_core::rollout::GateName::Fleet)
        .unwrap();
    assert!(fleet.detail.contains("cannot be read"), "{}", fleet.detail);
    let r = get(&b, "/api/v1/rollouts/ro-fleet").await;
    assert_eq!(r["stage_stats"]["scope"], "this replica");
    assert_eq!(r["stage_stats"]["candidate"]["decisions"], 55);
    assert!(r["stage_stats"]["fleet_error"].is_string(), "{r}");
}

fn v_stage(h: &Harness) -> String {
    active(h).stage.as_str().to_owned()
}
