//! The properties every parser of client input must hold, over [`crate::body`]'s inputs. Each
//! takes the parser under test as a closure: the real one in the test command and the
//! benchmark, one with a planted bug in the tests that prove a run finds it. Each panics on the
//! first failing case (shrunk) and returns how long the run took, to be printed.

use std::time::Duration;

use proptest::{prop_assert, prop_assert_eq};
use time::OffsetDateTime;
use tradeserve_core::PredictError;
use tradeserve_core::request::{PredictRequest, RequestRules, parse_predict_request};
use tradeserve_features::live::{Ingested, LiveConfig, LiveFeatures, Rejection};
use tradeserve_server::error::ApiError;

use crate::{body, fuzz};

/// The clock of every run: the bodies' timestamps are in October 2025, so a fixed "now" keeps
/// which are in the future the same whatever the date of the run.
pub const NOW: OffsetDateTime = time::macros::datetime!(2025-10-21 12:00 UTC);

/// The service's own decision-request parser, at [`NOW`].
pub fn parse_request(body: &[u8]) -> Result<PredictRequest, PredictError> {
    parse_predict_request(body, NOW, &RequestRules::default()).map_err(PredictError::Request)
}

/// Every body either parses, or is refused with a 400 or a 422 that carries a code and a
/// message (`ApiError`, the service's one mapping of errors to responses): never another
/// status, never a panic.
pub fn requests_parse_or_are_refused_with_a_4xx(
    cases: u32,
    parse: impl Fn(&[u8]) -> Result<PredictRequest, PredictError>,
) -> Duration {
    fuzz("decision requests", cases, body(), |b| {
        if let Err(e) = parse(&b) {
            let api = ApiError::from(e);
            prop_assert!(
                api.status.as_u16() == 400 || api.status.as_u16() == 422,
                "{} for {:?}",
                api.status,
                String::from_utf8_lossy(&b)
            );
            prop_assert!(!api.body.code.is_empty() && !api.body.message.is_empty());
        }
        Ok(())
    })
}

/// A live feature source on [`NOW`], with the default settings.
pub fn live_features() -> LiveFeatures {
    LiveFeatures::with_clock(LiveConfig::default(), std::sync::Arc::new(|| NOW))
}

/// Every body is applied, a duplicate, or rejected with a reason, and counted once under what
/// happened to it: no bar is acknowledged without being counted, none counted twice, none
/// panics.
pub fn bars_are_applied_or_rejected_and_counted_once(
    cases: u32,
    live: &LiveFeatures,
    ingest: impl Fn(&LiveFeatures, &[u8]) -> Result<Ingested, Rejection>,
) -> Duration {
    fuzz("bars", cases, body(), |b| {
        let (mut applied, mut duplicates, mut rejected) = live.counts();
        let outcome = ingest(live, &b);
        match outcome {
            Ok(Ingested::Appended | Ingested::Reordered) => applied += 1,
            Ok(Ingested::Duplicate) => duplicates += 1,
            Err(reason) => *rejected.entry(reason).or_default() += 1,
        }
        prop_assert_eq!(
            live.counts(),
            (applied, duplicates, rejected),
            "{:?} for {:?}",
            outcome,
            String::from_utf8_lossy(&b)
        );
        Ok(())
    })
}
