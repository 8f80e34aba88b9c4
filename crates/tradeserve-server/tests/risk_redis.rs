//! Risk limits that hold across replicas (`[ledger] store = "redis"`, a real redis-server):
//! two replicas and 64 concurrent clients trading one symbol end exactly at the limit, the
//! position in Redis equal to the sum of the orders they approved; the daily order count holds
//! the same way; a halt key stops every replica; Redis gone is 503 `risk_unavailable` (or this
//! replica's own books with `on_unavailable = "local"`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{Harness, harness, harness_with, predict};
use serde_json::Value;
use tradeserve_server::risk_redis::{LedgerStore, Unavailable};
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
        c.ledger.timeout = std::time::Duration::from_millis(500);
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
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (p, o): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
        .arg(key)
        .arg("position")
        .arg("orders")
        .query_async(&mut conn)
        .await
        .unwrap();
    (p.unwrap_or(0), o.unwrap_or(0))
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
async fn the_daily_order_count_and_the_halt_hold_across_replicas() {
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
    let replicas = [make(), make()];
    let (approved, _) = storm(&replicas, &body, 2).await;
    assert_eq!(approved, 7);
    assert_eq!(book(&url, &format!("daily:risk:{symbol}")).await.1, 7);

    // A halt key stops every replica, on any symbol; removing it resumes.
    let fresh = Arc::new(replica(&url, "halt", |_| {}));
    let other = Arc::new(replica(&url, "halt", |_| {}));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("halt:risk:halt")
        .arg("drill")
        .query_async(&mut conn)
        .await
        .unwrap();
    for h in [&fresh, &other] {
        let (s, d) = predict(h, &body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{d}");
        assert_eq!(d["risk_validation"]["checks"]["kill_switch"], "fail", "{d}");
    }
    let _: () = redis::cmd("DEL")
        .arg("halt:risk:halt")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (s, d) = predict(&fresh, &body).await;
    assert_eq!(s, StatusCode::OK, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
async fn redis_gone_fails_closed_or_falls_back_to_local_books_when_configured() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (_, body, _) = trading_request().await;
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
