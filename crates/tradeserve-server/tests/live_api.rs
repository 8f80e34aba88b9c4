//! `features.source = "live"` through the router: bars posted to `POST /api/v1/bars` feed the
//! decisions — a decision at a bar's time equals the replay's at the same time; a symbol whose
//! newest bar is older than `max_bar_age` is refused with 503 `stale_features`; bad bars are
//! counted by reason and listed by index, never failing the others; `GET /api/v1/symbols`,
//! `/health/ready` and `/metrics` show the feed. A replaying service refuses posted bars.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::{Harness, assert_error, call, harness, harness_with, predict};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tradeserve_server::config::FeatureSourceKind;

fn live() -> Harness {
    harness_with(|c| c.features.source = FeatureSourceKind::Live)
}

/// The first `n` bundled bars of `symbol`, as a feed sends them.
fn bundled(symbol: &str, n: usize) -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/bars.csv");
    let all = tradeserve_features::load_bars_csv(std::path::Path::new(path)).unwrap();
    let b = &all[symbol];
    (0..n)
        .map(|i| {
            let end = OffsetDateTime::from_unix_timestamp(b.ts[i]).unwrap();
            bar(symbol, end, b.close[i], b.high[i], b.low[i], b.volume[i])
        })
        .collect()
}

fn bar(symbol: &str, end: OffsetDateTime, close: f64, high: f64, low: f64, volume: f64) -> Value {
    let end = end
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    json!({"symbol": symbol, "end": end, "open": close, "high": high, "low": low,
        "close": close, "volume": volume})
}

async fn post_bars(h: &Harness, bars: &[Value]) -> (StatusCode, Value) {
    let body = json!({ "bars": bars }).to_string();
    let (s, v, _) = call(h, "POST", "/api/v1/bars", Body::from(body)).await;
    (s, v)
}

#[tokio::test]
async fn posted_bars_decide_as_the_replay_does() {
    let (live, replay) = (live(), harness());
    for chunk in bundled("AAPL", 240).chunks(100) {
        let (s, v) = post_bars(&live, chunk).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["appended"], chunk.len(), "{v}");
    }
    let times: Vec<Value> = bundled("AAPL", 240)
        .into_iter()
        .skip(60)
        .step_by(17)
        .map(|b| b["end"].clone())
        .collect();
    for at in &times {
        let body = json!({"symbol": "AAPL", "timestamp": at, "risk_check": false}).to_string();
        let (s1, here) = predict(&live, &body).await;
        let (s2, there) = predict(&replay, &body).await;
        assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{here} {there}");
        for field in ["action", "confidence", "recommended_quantity"] {
            assert_eq!(here[field], there[field], "{field} at {at}");
        }
        assert_eq!(
            here["metadata"]["features_as_of"],
            there["metadata"]["features_as_of"]
        );
    }
    // The newest AAPL bar ended in 2025: far older than max_bar_age.
    let (s, v) = predict(&live, r#"{"symbol":"AAPL","risk_check":false}"#).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_error(&v, "stale_features");
    // Before the first bar with a full window: no features, said plainly.
    let early = bundled("AAPL", 30)[29]["end"].clone();
    let body = json!({"symbol": "AAPL", "timestamp": early}).to_string();
    let (s, v) = predict(&live, &body).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn fresh_bars_serve_bad_ones_are_counted_and_the_feed_is_visible() {
    let h = live();
    let now = OffsetDateTime::now_utc()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let mut bars: Vec<Value> = (0..70)
        .map(|i| {
            let p = 50.0 + (i as f64 * 0.3).sin();
            bar(
                "FRESH",
                now - time::Duration::minutes(69 - i),
                p,
                p + 0.1,
                p - 0.1,
                1_000.0 + i as f64,
            )
        })
        .collect();
    let good = bars.len();
    bars.insert(10, json!({"symbol": "FRESH", "end": "not a time"}));
    bars.insert(
        20,
        bar("FRESH", now + time::Duration::days(1), -1.0, 1.0, 0.5, 1.0),
    );
    bars.push(bars[5].clone());
    let (s, v) = post_bars(&h, &bars).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["appended"], &v["duplicates"]),
        (&json!(good), &json!(1)),
        "{v}"
    );
    assert_eq!(
        v["rejected"],
        json!({"malformed": 1, "non_positive_price": 1})
    );
    assert_eq!(
        v["errors"],
        json!([{"index": 10, "reason": "malformed"}, {"index": 20, "reason": "non_positive_price"}])
    );
    let (s, d) = predict(&h, r#"{"symbol":"FRESH","risk_check":false}"#).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    // A symbol with fewer bars than the longest window says so, and names the symbol.
    let (s, _) = post_bars(&h, &bundled("AAPL", 20)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = predict(&h, r#"{"symbol":"AAPL","risk_check":false}"#).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        v,
        json!({"error": {"code": "no_features", "field": "symbol",
            "message": "AAPL is warming up: 20 of the 61 bars the longest feature window needs"}})
    );

    let (_, symbols, _) = call(&h, "GET", "/api/v1/symbols", Body::empty()).await;
    assert_eq!(symbols["source"], "live");
    assert_eq!(
        (
            &symbols["symbols"][0]["symbol"],
            &symbols["symbols"][0]["status"]
        ),
        (&json!("AAPL"), &json!("warming_up"))
    );
    let fresh = &symbols["symbols"][1];
    assert_eq!(
        (&fresh["symbol"], &fresh["status"]),
        (&json!("FRESH"), &json!("live"))
    );
    assert_eq!(fresh["bars"], good - 60);
    let (_, ready, _) = call(&h, "GET", "/health/ready", Body::empty()).await;
    assert_eq!(
        ready["feed"],
        json!({"symbols": 2, "live": 1, "warming_up": 1, "stale": 0})
    );
    let (_, _, text) = call(&h, "GET", "/metrics", Body::empty()).await;
    for series in [
        format!("tradeserve_bars_total{{result=\"applied\"}} {}", good + 20),
        "tradeserve_bars_total{result=\"duplicate\"} 1".to_owned(),
        "tradeserve_bars_total{result=\"malformed\"} 1".to_owned(),
        "tradeserve_feed_symbols{status=\"live\"} 1".to_owned(),
    ] {
        assert!(text.contains(&series), "{series} not in /metrics");
    }
}

#[tokio::test]
async fn a_replaying_service_refuses_posted_bars() {
    let h = harness();
    let (s, v) = post_bars(&h, &bundled("AAPL", 1)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_error(&v, "not_live");
    let (_, symbols, _) = call(&h, "GET", "/api/v1/symbols", Body::empty()).await;
    assert_eq!(symbols["source"], "replay");
}

/// A batch of bars has its own body limit (`features.live.post_limit_bytes`, 1 MiB), not the
/// decisions' 16 KiB: 1,000 bars in one request are taken; a body over the limit is 413.
#[tokio::test]
async fn a_batch_of_a_thousand_bars_is_taken_and_one_over_the_limit_refused() {
    let h = live();
    let bars = bundled("NVDA", 1_000);
    let body = json!({ "bars": bars }).to_string();
    assert!(body.len() > 16 * 1024, "{} bytes", body.len());
    let (s, v) = post_bars(&h, &bars).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["appended"], 1_000);
    let big = "x".repeat(1024 * 1024);
    let body = json!({ "bars": [big] }).to_string();
    let (s, v, _) = call(&h, "POST", "/api/v1/bars", Body::from(body)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
}
