//! Risk limits that hold across replicas (`[ledger] store = "redis"`, a real redis-server):
//! two replicas and 64 concurrent clients trading one symbol end exactly at the limit, the
//! position in Redis equal to the sum of the orders they approved; the daily order count holds
//! the same way; Redis gone is 503 `risk_unavailable` (or this
//! replica's own books with `on_unavailable = "local"`). A ledger that lost its data (Redis
//! restarted empty under load) or was never initialised refuses every order until `tradeserve
//! risk rebuild-shared` (the real binary) rebuilds it from the replicas' audit logs: no order
//! past the limit, readiness and `/api/v1/stats` say why meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{Harness, harness, harness_with, predict};
use serde_json::Value;
use tradeserve_server::ledger::{LedgerStore, Unavailable};
use tradeserve_testkit::RedisServer;

/// A point in time at which the bundled models BUY (or SELL) `symbol` in a positive quantity:
/// the symbol, the request body and the signed quantity of each order.
async fn trading_request() -> (String, String, i64) {
    let probe = harness();
    for symbol in ["AAPL", "MSFT", "NVDA", "AMZN", "SPY", "TSLA"] {
        for hour in 14..20 {
            let body = format!(
                r#"{{"symbol":"{symbol}","timestamp":"2025-10-20T{hour}:30:00Z","risk_check":false}}"#
            );
            let (s, d) = predict(&probe, &body).await;
            assert_eq!(s, StatusCode::OK, "{d}");
            let q = d["recommended_quantity"].as_i64().unwrap();
            let sign = match d["action"].as_str().unwrap() {
                "BUY" => 1,
                "SELL" => -1,
                _ => 0,
            };
            if q > 0 && sign != 0 {
                let risky = body.replace(r#""risk_check":false"#, r#""risk_check":true"#);
                return (symbol.to_owned(), risky, sign * q);
            }
        }
    }
    panic!("no trading decision found");
}

/// `tradeserve risk rebuild-shared ARGS --by ci --reason test --write` on the ledger at
/// `url`/`prefix`; its JSON output.
fn rebuild_shared(url: &str, prefix: &str, args: &[&str]) -> Value {
    tradeserve_testkit::rebuild_shared_ledger(env!("CARGO_BIN_EXE_tradeserve"), url, prefix, args)
}

/// A new, empty shared ledger under `prefix`.
fn new_ledger(url: &str, prefix: &str) {
    let v = rebuild_shared(url, prefix, &["--flat"]);
    assert_eq!(v["written"], true, "{v}");
    assert_eq!(v["ledger_after"]["seq"], "0", "{v}");
}

fn replica(
    url: &str,
    prefix: &str,
    edit: impl FnOnce(&mut tradeserve_server::config::Config),
) -> Harness {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    harness_with(move |c| {
        c.ledger.store = LedgerStore::Redis;
        c.ledger.redis_url = url;
        c.ledger.redis_prefix = prefix;
        c.ledger.timeout = tradeserve_core::bounded::PositiveDuration::millis(500);
        edit(c);
    })
}

/// Fire `per_client` requests from each of 64 clients, alternating between the replicas;
/// returns (approved, rejected) counts.
async fn storm(replicas: &[Arc<Harness>], body: &str, per_client: usize) -> (usize, usize) {
    let mut tasks = Vec::new();
    for c in 0..64 {
        let replicas: Vec<Arc<Harness>> = replicas.to_vec();
        let body = body.to_owned();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut rejected) = (0, 0);
            for i in 0..per_client {
                let h = &replicas[(c + i) % replicas.len()];
                let (s, d) = predict(h, &body).await;
                match s {
                    StatusCode::OK => ok += 1,
                    StatusCode::FORBIDDEN => {
                        assert_eq!(d["error"]["code"], "risk_rejected", "{d}");
                        rejected += 1;
                    }
                    other => panic!("{other}: {d}"),
                }
            }
            (ok, rejected)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (a, r) = t.await.unwrap();
        total = (total.0 + a, total.1 + r);
    }
    total
}

async fn book(url: &str, key: &str) -> (i64, i64) {
    let client = tradeserve_testkit::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (p, o): (Option<i64>, Option<i64>) = tradeserve_testkit::redis::cmd("HMGET")
        .arg(key)
        .arg("position")
        .arg("orders")
        .query_async(&mut conn)
        .await
        .unwrap();
    (p.unwrap_or(0), o.unwrap_or(0))
}

/// A latch window longer than any test (`100000days`).
const LATCH_WINDOW: std::time::Duration = std::time::Duration::from_secs(100_000 * 86_400);

/// The latch's count in the book's current window (`win_n`).
async fn latch_count(url: &str, key: &str) -> u64 {
    let client = tradeserve_testkit::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let n: Option<u64> = tradeserve_testkit::redis::cmd("HGET")
        .arg(key)
        .arg("win_n")
        .query_async(&mut conn)
        .await
        .unwrap();
    n.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn two_replicas_and_64_clients_never_pass_the_position_limit_together() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (symbol, body, signed) = trading_request().await;
    let q = signed.unsigned_abs();
    // Room for exactly 10 orders (and a little more, less than an order).
    let limit = q * 10 + q / 2;
    let make = |prefix: &str| {
        Arc::new(replica(&url, prefix, |c| {
            c.risk.max_position_shares = limit;
            c.risk.max_position_notional = 1e12;
            c.risk.max_concentration = 1.0;
            c.risk.portfolio_capital = 1e15;
            c.risk.max_order_notional = 1e12;
        }))
    };
    new_ledger(&url, "fleet");
    let replicas = [make("fleet"), make("fleet")];
    let (approved, rejected) = storm(&replicas, &body, 4).await;
    assert_eq!((approved, rejected), (10, 64 * 4 - 10));
    let (position, orders) = book(&url, &format!("fleet:risk:{symbol}")).await;
    assert_eq!(position, signed * 10);
    assert!(position.unsigned_abs() <= limit);
    assert_eq!(orders, 10);
    // Each replica's own answers add up to the same: what clients were told was approved is
    // what Redis holds.
    let mut from_events = 0i64;
    for r in &replicas {
        common::flush(r);
        for e in common::audit_events(r) {
            if e["event_type"] == "trading_decision" && e["approved"] == Value::Bool(true) {
                from_events += signed.signum() * e["quantity"].as_i64().unwrap();
            }
        }
    }
    assert_eq!(from_events, position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn the_daily_order_count_holds_across_replicas() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (symbol, body, _) = trading_request().await;
    let make = || {
        Arc::new(replica(&url, "daily", |c| {
            c.risk.max_daily_orders = 7;
            c.risk.max_position_shares = u64::MAX / 4;
            c.risk.max_position_notional = 1e15;
            c.risk.max_concentration = 1.0;
            c.risk.portfolio_capital = 1e15;
            c.risk.max_order_notional = 1e12;
        }))
    };
    new_ledger(&url, "daily");
    let replicas = [make(), make()];
    let (approved, _) = storm(&replicas, &body, 2).await;
    assert_eq!(approved, 7);
    assert_eq!(book(&url, &format!("daily:risk:{symbol}")).await.1, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn redis_gone_fails_closed_or_falls_back_to_local_books_when_configured() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (_, body, _) = trading_request().await;
    new_ledger(&url, "gone");
    let closed = replica(&url, "gone", |_| {});
    let local = replica(&url, "gone", |c| {
        c.ledger.on_unavailable = Unavailable::Local
    });
    let (s, d) = predict(&closed, &body).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    drop(redis);
    let (s, d) = predict(&closed, &body).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{d}");
    assert_eq!(d["error"]["code"], "risk_unavailable");
    assert!(
        d["error"]["message"].as_str().unwrap().contains("Redis"),
        "{d}"
    );
    let (s, d) = predict(&local, &body).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    // A replica that never reached Redis does not wait out the connect deadline on every
    // order: after one failed connect the next orders are refused at once, for a second.
    let never = replica("redis://127.0.0.1:1/0", "never", |_| {});
    let (s, d) = predict(&never, &body).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{d}");
    let (s, d) = predict(&never, &body).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{d}");
    assert!(
        d["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a connect failed"),
        "{d}"
    );
    // Decisions without a risk check never needed Redis.
    let unchecked = body.replace(r#""risk_check":true"#, r#""risk_check":false"#);
    let (s, _) = predict(&closed, &unchecked).await;
    assert_eq!(s, StatusCode::OK);
}

/// Orders from one client against `h` until `stop`: (approved, rejected by risk, 503).
async fn trade_until(
    h: Arc<Harness>,
    body: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let (s, d) = predict(&h, &body).await;
        match s {
            StatusCode::OK => counts.0 += 1,
            StatusCode::FORBIDDEN => counts.1 += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(d["error"]["code"], "risk_unavailable", "{d}");
                counts.2 += 1;
            }
            other => panic!("{other}: {d}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    counts
}

/// Approved risk-checked orders in a replica's audit log (it is written before each answer).
fn approved_in(h: &Harness) -> usize {
    common::audit_events(h)
        .iter()
        .filter(|e| e["event_type"] == "trading_decision" && e["approved"] == Value::Bool(true))
        .filter(|e| !e["risk_checks"].is_null())
        .count()
}

async fn readiness(h: &Harness) -> (StatusCode, Value, Value) {
    let (s, ready, _) = common::call(h, "GET", "/health/ready", axum::body::Body::empty()).await;
    let (_, stats, _) = common::call(h, "GET", "/api/v1/stats", axum::body::Body::empty()).await;
    (s, ready, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn a_redis_restarted_empty_under_load_approves_nothing_past_the_limit_until_rebuilt() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tradeserve_testkit::eventually_async;
    let mut redis = Some(RedisServer::start());
    let (port, url) = (redis.as_ref().unwrap().port, redis.as_ref().unwrap().url());
    let (_, body, signed) = trading_request().await;
    let q = signed.unsigned_abs();
    // Room for exactly 100 orders.
    let limit = q * 100 + q / 2;
    let make = || {
        Arc::new(replica(&url, "reset", |c| {
            c.risk.max_position_shares = limit;
            c.risk.max_daily_orders = 1_000_000;
            c.risk.max_position_notional = 1e15;
            c.risk.max_concentration = 1.0;
            c.risk.portfolio_capital = 1e15;
            c.risk.max_order_notional = 1e12;
            // Orders are timed by the wall clock: one latch window for the whole test.
            c.risk.repeated_execution_window = LATCH_WINDOW;
        }))
    };
    // A ledger never initialised refuses, and says how to fix it.
    let early = make();
    let (s, d) = predict(&early, &body).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{d}");
    assert!(
        d["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rebuild-shared"),
        "{d}"
    );
    drop(early);
    new_ledger(&url, "reset");
    let replicas = [make(), make()];
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = replicas
        .iter()
        .map(|h| tokio::spawn(trade_until(Arc::clone(h), body.clone(), Arc::clone(&stop))))
        .collect();
    eventually_async("30 approved orders", || async {
        (replicas.iter().map(|h| approved_in(h)).sum::<usize>() >= 30).then_some(())
    })
    .await;
    // Redis dies mid-load and comes back empty on the same port.
    drop(redis.take());
    redis = Some(RedisServer::start_on(port));
    for h in &replicas {
        eventually_async("readiness sees the reset ledger", || async {
            let (s, ready, stats) = readiness(h).await;
            (s == StatusCode::SERVICE_UNAVAILABLE
                && ready.to_string().contains("rebuild-shared")
                && stats["risk"]["available"] == false
                && stats["risk"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("no generation")))
            .then_some(())
        })
        .await;
    }
    let before: usize = replicas.iter().map(|h| approved_in(h)).sum();
    // Nothing is approved while the ledger is reset.
    eventually_async("orders refused on the reset ledger", || async {
        let (s, d) = predict(&replicas[0], &body).await;
        (s == StatusCode::SERVICE_UNAVAILABLE && d["error"]["code"] == "risk_unavailable")
            .then_some(())
    })
    .await;
    assert_eq!(
        replicas.iter().map(|h| approved_in(h)).sum::<usize>(),
        before
    );
    // Rebuilt from both replicas' audit logs: the position the fleet holds, then orders up to
    // the limit and not one past it.
    let logs: Vec<String> = replicas
        .iter()
        .map(|h| h.audit_path.display().to_string())
        .collect();
    let rebuilt = tradeserve_testkit::service::rebuild_shared_ledger_with(
        env!("CARGO_BIN_EXE_tradeserve"),
        &url,
        "reset",
        &["--audit-log", &logs[0], "--audit-log", &logs[1]],
        &[("TRADESERVE_RISK__REPEATED_EXECUTION_WINDOW", "100000days")],
    );
    let symbol = body.split('"').nth(3).unwrap();
    assert_eq!(
        rebuilt["books"][symbol]["position"].as_i64().unwrap(),
        signed * before as i64,
        "{rebuilt}"
    );
    // The latch's count in its window is the fleet's too, so the rebuild does not restart it.
    assert_eq!(
        rebuilt["latch"][symbol]["orders"].as_u64().unwrap(),
        before as u64,
        "{rebuilt}"
    );
    eventually_async("the limit reached on both replicas", || async {
        (replicas.iter().map(|h| approved_in(h)).sum::<usize>() >= 100
            && predict(&replicas[0], &body).await.0 == StatusCode::FORBIDDEN
            && predict(&replicas[1], &body).await.0 == StatusCode::FORBIDDEN)
            .then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut answered = (0, 0, 0);
    for t in load {
        let c = t.await.unwrap();
        answered = (answered.0 + c.0, answered.1 + c.1, answered.2 + c.2);
    }
    let approved: usize = replicas.iter().map(|h| approved_in(h)).sum();
    assert_eq!(approved, 100, "answered {answered:?}");
    assert!(answered.2 > 0, "the outage was seen: {answered:?}");
    let (position, _) = book(&url, &format!("reset:risk:{symbol}")).await;
    assert_eq!(position, signed * 100);
    // The latch counted on from the rebuilt count: every approved order is in its window.
    assert_eq!(
        latch_count(&url, &format!("reset:risk:{symbol}")).await,
        100
    );
    for h in &replicas {
        let (s, _, stats) = readiness(h).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            stats["risk"],
            serde_json::json!({"available": true, "reason": null})
        );
    }
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn a_ledger_that_went_back_in_time_is_lost_for_the_whole_fleet_and_a_live_one_is_not_replaced_by_accident()
 {
    let redis = RedisServer::start();
    let url = redis.url();
    let (_, body, _) = trading_request().await;
    new_ledger(&url, "lag");
    let (a, b) = (replica(&url, "lag", |_| {}), replica(&url, "lag", |_| {}));
    for _ in 0..3 {
        assert_eq!(predict(&a, &body).await.0, StatusCode::OK);
    }
    // A failover to a replica that missed the last two orders: the count goes back to 1.
    let client = tradeserve_testkit::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = tradeserve_testkit::redis::cmd("HSET")
        .arg("lag:ledger")
        .arg("seq")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (s, d) = predict(&a, &body).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{d}");
    let message = d["error"]["message"].as_str().unwrap();
    assert!(message.contains("went back from order 3 to order 1"), "{d}");
    // The replica that saw nothing of it refuses too: the ledger is marked lost.
    let (s, d) = predict(&b, &body).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{d}");
    assert!(
        d["error"]["message"]
            .as_str()
            .unwrap()
            .contains("marked lost"),
        "{d}"
    );
    // A lost ledger is rebuilt without --replace; then trading resumes on both.
    let logs = [a.audit_path.display().to_string()];
    let v = rebuild_shared(&url, "lag", &["--audit-log", &logs[0]]);
    assert_eq!(v["ledger_before"]["seq"], "1", "{v}");
    assert_eq!(predict(&b, &body).await.0, StatusCode::OK);
    assert_eq!(predict(&a, &body).await.0, StatusCode::OK);
    // A live ledger is replaced only on purpose.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tradeserve"))
        .args([
            "risk",
            "rebuild-shared",
            "--flat",
            "--by",
            "ci",
            "--reason",
            "oops",
            "--write",
        ])
        .env("TRADESERVE_LEDGER__REDIS_URL", &url)
        .env("TRADESERVE_LEDGER__REDIS_PREFIX", "lag")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is live") && stderr.contains("--replace"),
        "{stderr}"
    );
    assert_eq!(predict(&a, &body).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn a_ledger_of_the_older_layout_is_refused_until_rebuilt_and_its_desk_hashes_go() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (_, body, _) = trading_request().await;
    new_ledger(&url, "old");
    let a = replica(&url, "old", |_| {});
    assert_eq!(predict(&a, &body).await.0, StatusCode::OK);
    // What the version before the desks moved into the ledger hash left: no layout, and a
    // desk's counts in a hash of its own (which this version would read as flat).
    let client = tradeserve_testkit::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = tradeserve_testkit::redis::cmd("HDEL")
        .arg("old:ledger")
        .arg("layout")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = tradeserve_testkit::redis::cmd("HSET")
        .arg("old:desk:-")
        .arg("notional")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (s, d) = predict(&a, &body).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{d}");
    let message = d["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("layout 1") && message.contains("--replace"),
        "{d}"
    );
    let logs = [a.audit_path.display().to_string()];
    let v = rebuild_shared(&url, "old", &["--replace", "--audit-log", &logs[0]]);
    assert_eq!(v["written"], true, "{v}");
    assert_eq!(predict(&a, &body).await.0, StatusCode::OK);
    let left: i64 = tradeserve_testkit::redis::cmd("EXISTS")
        .arg("old:desk:-")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "the older desk hash is removed by the rebuild");
}
