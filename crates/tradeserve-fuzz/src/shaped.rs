//! Bodies shaped like the API's own: a decision request and a one-minute bar, each field
//! present or absent at random and its value usually valid, sometimes any JSON leaf. Random
//! objects of API field names reach a parser's front door (a missing `symbol`, an unknown
//! field); these reach what lies behind it (a valid request for `BRK.B` with a strategy
//! override, a zero-volume bar, a bar in the future or out of order).

use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

use crate::leaf;

/// `valid` most of the time, any leaf sometimes.
fn mostly<S>(valid: S) -> impl Strategy<Value = Value>
where
    S: Strategy<Value = Value> + 'static,
{
    prop_oneof![5 => valid, 1 => leaf()]
}

fn text(values: &'static [&'static str]) -> impl Strategy<Value = Value> {
    select(values).prop_map(|s| Value::String(s.to_owned()))
}

fn symbol() -> impl Strategy<Value = Value> {
    mostly(text(&["AAPL", "MSFT", "SPY", "BRK.B", "BF-B", "A", "X1"]))
}

/// A JSON object of the fields that are present.
fn object_of(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    Value::Object(map)
}

/// A `POST /api/v1/predict` body.
pub fn request() -> impl Strategy<Value = Value> {
    let timestamp = mostly(text(&[
        "2025-10-20T15:00:00Z",
        "2025-10-21T11:59:30.5+00:00",
        "2025-10-21T13:00:00Z",
        "2030-01-01T00:00:00Z",
    ]));
    let strategy = mostly(prop_oneof![
        text(&["bull_specialist", "bear_specialist", "sideways_specialist"]),
        Just(Value::Null),
    ]);
    let flag = || mostly(any::<bool>().prop_map(Value::Bool));
    (
        option::weighted(0.95, symbol()),
        option::of(timestamp),
        option::of(strategy),
        option::of(flag()),
        option::of(flag()),
        option::weighted(0.05, leaf()),
    )
        .prop_map(|(symbol, timestamp, strategy, risk, explain, extra)| {
            object_of(vec![
                ("symbol", symbol),
                ("timestamp", timestamp),
                ("strategy_override", strategy),
                ("risk_check", risk),
                ("explain", explain),
                ("client_id", extra),
            ])
        })
}

/// A `POST /api/v1/bars` body (or one message of the bar feed): prices that usually make a
/// valid bar, ends a minute apart from ten before the fuzz runs' clock to five after it.
pub fn bar() -> impl Strategy<Value = Value> {
    let price = |p: f64| mostly(Just(json!(p)));
    let volume = mostly(select(&[0.0, 1.0, 1500.0, 2.5e7, -3.0][..]).prop_map(|v| json!(v)));
    (
        symbol(),
        mostly((0u32..16).prop_map(|m| {
            let minute = 11 * 60 + 50 + m;
            json!(format!(
                "2025-10-21T{:02}:{:02}:00Z",
                minute / 60,
                minute % 60
            ))
        })),
        (1.0f64..500.0, 0.0f64..0.05, 0.0f64..=1.0, 0.0f64..=1.0),
        volume,
        option::weighted(0.03, leaf()),
    )
        .prop_flat_map(move |(symbol, end, (low, spread, o, c), volume, extra)| {
            let high = low * (1.0 + spread);
            let at = |f: f64| low + (high - low) * f;
            (price(at(o)), price(high), price(low), price(at(c))).prop_map(
                move |(open, high, low, close)| {
                    object_of(vec![
                        ("symbol", Some(symbol.clone())),
                        ("end", Some(end.clone())),
                        ("open", Some(open)),
                        ("high", Some(high)),
                        ("low", Some(low)),
                        ("close", Some(close)),
                        ("volume", Some(volume.clone())),
                        ("vwap", extra.clone()),
                    ])
                },
            )
        })
}
