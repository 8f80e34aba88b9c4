//! A million cases each, from [`tradeserve_fuzz::body`]:
//! - decision requests through `parse_predict_request` and the error mapping: no panic, and
//!   every rejection is 400 or 422 in the error shape;
//! - live bars through `LiveFeatures::ingest_json`: no panic, each bar applied, a duplicate, or
//!   rejected with a reason (the counts add up).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use proptest::prop_assert;
use tradeserve_core::PredictError;
use tradeserve_core::request::{RequestRules, parse_predict_request};
use tradeserve_fuzz::{body, fuzz, million};
use tradeserve_server::error::ApiError;

#[test]
fn a_million_decision_requests_parse_or_are_refused_with_a_4xx() {
    let now = time::macros::datetime!(2025-10-21 12:00 UTC);
    let rules = RequestRules::default();
    let took = fuzz("decision requests", million(), body(), |b| {
        if let Err(e) = parse_predict_request(&b, now, &rules) {
            let api = ApiError::from(PredictError::Request(e));
            prop_assert!(
                api.status == StatusCode::BAD_REQUEST
                    || api.status == StatusCode::UNPROCESSABLE_ENTITY,
                "{} for {:?}",
                api.status,
                String::from_utf8_lossy(&b)
            );
            prop_assert!(!api.body.code.is_empty() && !api.body.message.is_empty());
        }
        Ok(())
    });
    eprintln!("decision requests: {} cases in {took:.1?}", million());
}

#[test]
fn a_million_bars_are_applied_or_rejected_with_a_reason() {
    let live = tradeserve_features::live::LiveFeatures::new(Default::default());
    let took = fuzz("bars", million(), body(), |b| {
        let _ = live.ingest_json(&b);
        Ok(())
    });
    eprintln!("bars: {} cases in {took:.1?}", million());
    let (applied, duplicates, rejected) = live.counts();
    let rejected: u64 = rejected.values().sum();
    assert_eq!(applied + duplicates + rejected, u64::from(million()));
    assert!(
        rejected > 0 && applied > 0,
        "{applied} applied, {rejected} rejected"
    );
}
