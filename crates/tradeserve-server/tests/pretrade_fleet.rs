//! The pre-trade controls on the real binary, fleet-wide: two replicas sharing the risk
//! ledger and the control store in a real redis-server, requests alternating between them,
//! with API keys as desks. `order_quantity` refuses an order over the size before it reaches
//! the ledger; `desk_daily_notional` holds a key's own limit across both replicas while
//! another desk trades; `order_rate` never lets more orders through in one UTC second than the
//! limit (per symbol and per desk); the repeated-execution latch refuses the order past its
//! count in a window and halts the symbol for the whole fleet (actor `risk`) until an operator
//! releases it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod load_common;

use std::collections::BTreeMap;

use load_common::serial;
use serde_json::{Value, json};
use tradeserve_auth::key::generate;
use tradeserve_testkit::{RedisServer, ServiceProcess, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

/// Two replicas (killed when dropped) and a client of both.
struct Fleet {
    _replicas: [ServiceProcess; 2],
    /// Each replica's audit log.
    audit_logs: [String; 2],
    _dir: tempfile::TempDir,
    client: Client,
}

impl std::ops::Deref for Fleet {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Calls to either replica as one of the desks (shareable between threads).
struct Client {
    urls: [String; 2],
    /// desk id → API key.
    keys: BTreeMap<&'static str, String>,
    http: reqwest::blocking::Client,
}

/// Two replicas on `redis` under `prefix`, with `[risk]` lines `risk` and three desks:
/// `ops` (operator), `desk-1` (`desk_1` key options) and `desk-2` (`desk_2` options).
fn fleet(redis: &RedisServer, prefix: &str, risk: &str, desk_1: &str, desk_2: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    load_common::new_shared_ledger(&redis.url(), prefix);
    let mut keys = BTreeMap::new();
    let mut toml = String::new();
    for (id, role, extra) in [
        ("ops", "operator", ""),
        ("desk-1", "trader", desk_1),
        ("desk-2", "trader", desk_2),
    ] {
        let (key, hash) = generate(id).unwrap();
        keys.insert(id, key);
        toml += &format!(
            "[[auth.keys]]\nid = \"{id}\"\nhash = \"{hash}\"\nroles = [\"{role}\"]\n{extra}\n"
        );
    }
    let url = redis.url();
    let replicas = [0, 1].map(|n| {
        let path = |p: &str| dir.path().join(format!("{p}-{n}")).display().to_string();
        let config = dir.path().join(format!("config-{n}.toml"));
        std::fs::write(
            &config,
            format!(
                "[risk]\nmax_position_shares = 1000000000000\nmax_position_notional = 1e18\n\
                 max_concentration = 1.0\nportfolio_capital = 1e20\nmax_order_notional = 1e18\n\
                 max_daily_orders = 1000000000\n{risk}\n\
                 [ledger]\nstore = \"redis\"\nredis_url = \"{url}\"\nredis_prefix = \"{prefix}\"\ntimeout = \"5s\"\n\
                 [control]\nstore = \"redis\"\nredis_url = \"{url}\"\nredis_prefix = \"{prefix}\"\n\
                 [events]\naudit_log = \"{audit}\"\n{toml}",
                audit = path("audit.jsonl"),
            ),
        )
        .unwrap();
        ServiceProcess::start_with(BIN, &["--config", &config.display().to_string()], &[])
    });
    let urls = [replicas[0].url(), replicas[1].url()];
    let audit_logs = [0, 1].map(|n| {
        let log = dir.path().join(format!("audit.jsonl-{n}"));
        log.display().to_string()
    });
    Fleet {
        _replicas: replicas,
        audit_logs,
        _dir: dir,
        client: Client {
            urls,
            keys,
            http: reqwest::blocking::Client::new(),
        },
    }
}

impl Client {
    fn call(
        &self,
        replica: usize,
        desk: &str,
        method: &str,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.urls[replica]);
        let req = match method {
            "POST" => self.http.post(url).json(&body),
            "DELETE" => self.http.delete(url).json(&body),
            _ => self.http.get(url),
        };
        let res = req.bearer_auth(&self.keys[desk]).send().unwrap();
        let status = res.status().as_u16();
        let bytes = res.bytes().unwrap();
        tradeserve_testkit::openapi::assert_documented(method, path, status, &bytes);
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn predict(&self, replica: usize, desk: &str, body: &Value) -> (u16, Value) {
        self.call(replica, desk, "POST", "/api/v1/predict", body.clone())
    }

    /// A risk-checked request that trades shares, and its quantity.
    fn order(&self) -> (Value, u64) {
        let body = load_common::trading_orders(1, |b| self.predict(0, "desk-2", b)).remove(0);
        let mut probe = body.clone();
        probe["risk_check"] = json!(false);
        let (_, d) = self.predict(0, "desk-2", &probe);
        (body, d["recommended_quantity"].as_u64().unwrap())
    }
}

fn failed(d: &Value, check: &str) -> bool {
    d["risk_validation"]["checks"][check] == "fail"
}

#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn order_quantity_refuses_an_order_over_the_size_on_every_replica() {
    let _serial = serial();
    let redis = RedisServer::start();
    let probe = fleet(&redis, "probe", "", "", "");
    let (body, q) = probe.order();
    drop(probe);
    let f = fleet(
        &redis,
        "qty",
        &format!("max_order_quantity = {}", q - 1),
        "",
        "",
    );
    for r in [0, 1] {
        let (s, d) = f.predict(r, "desk-1", &body);
        assert_eq!(s, 403, "{d}");
        assert!(failed(&d, "order_quantity"), "{d}");
        let w = d["risk_validation"]["warnings"].to_string();
        assert!(
            w.contains(&format!("order_quantity: {q} shares, limit {}", q - 1)),
            "{w}"
        );
    }
    // Nothing was booked: the shared ledger applied no order.
    let client = tradeserve_testkit::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let seq: String = tradeserve_testkit::redis::cmd("HGET")
        .arg("qty:ledger")
        .arg("seq")
        .query(&mut conn)
        .unwrap();
    assert_eq!(seq, "0");
}

#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn a_desks_daily_notional_holds_across_the_fleet_while_another_desk_trades() {
    let _serial = serial();
    let redis = RedisServer::start();
    let probe = fleet(&redis, "probe2", "", "", "");
    let (body, _) = probe.order();
    // The order's notional, from its own warning when the desk limit is one cent.
    drop(probe);
    let tiny = fleet(&redis, "tiny", "", "daily_notional = 0.01", "");
    let (_, d) = tiny.predict(0, "desk-1", &body);
    let w = d["risk_validation"]["warnings"].to_string();
    let dollars: f64 = w
        .split("desk desk-1 at $")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    drop(tiny);
    // Room for three orders and a half.
    let f = fleet(
        &redis,
        "notional",
        "",
        &format!("daily_notional = {}", dollars * 3.5),
        "",
    );
    let mut approved = 0;
    for i in 0..8 {
        let (s, d) = f.predict(i % 2, "desk-1", &body);
        match s {
            200 => approved += 1,
            403 => assert!(failed(&d, "desk_daily_notional"), "{d}"),
            _ => panic!("{s}: {d}"),
        }
        // The other desk has the default limit: it trades throughout.
        assert_eq!(f.predict(1 - i % 2, "desk-2", &body).0, 200);
    }
    assert_eq!(approved, 3);
    // The ledger rebuilt from both audit logs keeps what each desk traded today.
    let logs = &f.audit_logs;
    let rebuilt = tradeserve_testkit::rebuild_shared_ledger(
        BIN,
        &redis.url(),
        "notional",
        &[
            "--replace",
            "--audit-log",
            &logs[0],
            "--audit-log",
            &logs[1],
        ],
    );
    assert_eq!(rebuilt["written"], true, "{rebuilt}");
    for replica in 0..2 {
        let (s, d) = f.predict(replica, "desk-1", &body);
        assert_eq!(s, 403, "{d}");
        assert!(failed(&d, "desk_daily_notional"), "{d}");
        assert_eq!(f.predict(replica, "desk-2", &body).0, 200);
    }
}

#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn order_rate_never_passes_its_limit_in_a_second_per_symbol_or_per_desk() {
    let _serial = serial();
    let redis = RedisServer::start();
    let f = fleet(
        &redis,
        "rate",
        "max_orders_per_second_symbol = 3",
        "",
        "orders_per_second = 2",
    );
    let (body, _) = f.order();
    // 60 orders at once over both replicas; approved ones are counted per UTC second of their
    // decision (the clock the rate uses).
    let burst = |desk: &'static str, limit: usize| {
        let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..60)
                .map(|i| {
                    let (f, body) = (&f.client, &body);
                    s.spawn(move || f.predict(i % 2, desk, body))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut per_second: BTreeMap<String, usize> = BTreeMap::new();
        let mut refused = 0;
        for (s, d) in &answers {
            match s {
                200 => {
                    *per_second
                        .entry(d["metadata"]["timestamp"].as_str().unwrap()[..19].to_owned())
                        .or_default() += 1
                }
                403 => {
                    assert!(failed(d, "order_rate"), "{d}");
                    refused += 1;
                }
                _ => panic!("{s}: {d}"),
            }
        }
        assert!(
            per_second.values().all(|n| *n <= limit),
            "{desk}: {per_second:?}"
        );
        assert!(
            refused > 0,
            "{desk}: 60 orders and none refused: {per_second:?}"
        );
    };
    burst("desk-1", 3);
    // desk-2's own two a second, whichever symbol.
    burst("desk-2", 2);
}

#[test]
#[ignore = "needs redis-server (scripts/test.sh installs it)"]
fn the_repeated_execution_latch_halts_the_symbol_for_the_fleet_until_released() {
    let _serial = serial();
    let redis = RedisServer::start();
    let f = fleet(
        &redis,
        "latch",
        "repeated_execution_max = 5\nrepeated_execution_window = \"3s\"",
        "",
        "",
    );
    let (body, _) = f.order();
    let symbol = body["symbol"].as_str().unwrap().to_owned();
    // Windows are aligned to the clock (3 s each here): orders until the latch trips, then
    // exactly five approved in the tripping order's window, whichever windows they straddled.
    let window = |d: &Value| {
        let at = d["metadata"]["timestamp"].as_str().unwrap();
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339);
        at.unwrap().unix_timestamp_nanos() / 3_000_000_000
    };
    let mut approved = Vec::new();
    let tripped = (0..30)
        .find_map(|i| {
            let (s, d) = f.predict(i % 2, "desk-1", &body);
            match s {
                200 => approved.push(window(&d)),
                _ => return Some(d),
            }
            None
        })
        .expect("the latch never tripped");
    assert!(failed(&tripped, "repeated_execution"), "{tripped}");
    let w = window(&tripped);
    assert_eq!(
        approved.iter().filter(|a| **a == w).count(),
        5,
        "{approved:?}"
    );
    // The replica that saw it halts the symbol; both then withhold it by that halt.
    let halt = eventually("the latch's halt", || {
        let (_, v) = f.call(0, "ops", "GET", "/api/v1/halts", json!(null));
        v["halts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["status"] == "active")
            .cloned()
    });
    assert_eq!(halt["scope"], json!({"type": "symbol", "symbol": symbol}));
    assert_eq!(halt["created"]["by"], "risk");
    assert!(
        halt["reason"]
            .as_str()
            .unwrap()
            .starts_with("repeated_execution"),
        "{halt}"
    );
    let id = halt["halt_id"].as_str().unwrap();
    for r in [0, 1] {
        eventually("the halt on every replica", || {
            let (s, d) = f.predict(r, "desk-1", &body);
            (s == 403 && d["risk_validation"]["warnings"].to_string().contains(id)).then_some(())
        });
    }
    // Released by an operator once the window is over: trading resumes, one latch halt in all.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (s, v) = f.call(
        1,
        "ops",
        "DELETE",
        &format!("/api/v1/halts/{id}"),
        json!({"reason": "checked"}),
    );
    assert_eq!(s, 200, "{v}");
    for r in [1, 0] {
        eventually("trading again", || {
            (f.predict(r, "desk-1", &body).0 == 200).then_some(())
        });
    }
    let (_, v) = f.call(0, "ops", "GET", "/api/v1/halts", json!(null));
    assert_eq!(v["halts"].as_array().unwrap().len(), 1, "{v}");
}
