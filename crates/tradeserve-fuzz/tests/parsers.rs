//! The parser properties ([`tradeserve_fuzz::properties`]) on `TEST_CASES` (20,000) generated bodies
//! each — a fixed number, the same cases on every machine (seeded), timed but never against a
//! clock — and proof that a run of that size finds a bug: the same properties over a parser
//! with one planted, a failure a few levels deep in the input (a valid body with one
//! particular field), not a parser that fails on everything.
//!
//! The million-case runs are the `million` benchmark of this crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};

use tradeserve_core::PredictError;
use tradeserve_core::ports::FeatureError;
use tradeserve_features::live::{Bar, Ingested};
use tradeserve_fuzz::properties::{
    bars_are_applied_or_rejected_and_counted_once, live_features, parse_request,
    requests_parse_or_are_refused_with_a_4xx,
};
use tradeserve_fuzz::test_cases;

/// The panic message of `run`, which must fail.
fn failure_of(run: impl FnOnce()) -> String {
    let Err(e) = catch_unwind(AssertUnwindSafe(run)) else {
        panic!("the planted bug was not found in {} cases", test_cases());
    };
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Counts calls, and remembers the number of the first call that hit the planted bug.
#[derive(Default)]
struct FirstHit {
    calls: AtomicU32,
    first: AtomicU32,
}

impl FirstHit {
    /// A call: its number.
    fn call(&self) -> u32 {
        self.calls.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Call `n` hit the bug.
    fn hit(&self, n: u32) {
        let _ = self
            .first
            .compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The first call that hit it, which must be within the run.
    fn first(&self, what: &str) -> u32 {
        let first = self.first.load(Ordering::Relaxed);
        eprintln!("{what}: first hit at case {first} of {}", test_cases());
        assert!(first > 0 && first <= test_cases(), "{what}: {first}");
        first
    }
}

#[test]
fn decision_requests_parse_or_are_refused_with_a_4xx() {
    let (parsed, refused) = (AtomicU32::new(0), AtomicU32::new(0));
    let took = requests_parse_or_are_refused_with_a_4xx(test_cases(), |b| {
        let r = parse_request(b);
        let counter = if r.is_ok() { &parsed } else { &refused };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    });
    let (parsed, refused) = (parsed.into_inner(), refused.into_inner());
    eprintln!(
        "decision requests: {} cases in {took:.1?}: {parsed} parsed, {refused} refused",
        test_cases()
    );
    // The bodies reach both sides of the parser.
    assert_eq!(parsed + refused, test_cases());
    assert!(parsed >= test_cases() / 100, "{parsed} parsed");
    assert!(refused >= test_cases() / 2, "{refused} refused");
}

#[test]
fn bars_are_applied_or_rejected_and_each_counted_once() {
    let live = live_features();
    let took =
        bars_are_applied_or_rejected_and_counted_once(test_cases(), &live, |l, b| l.ingest_json(b));
    let (applied, duplicates, rejected) = live.counts();
    eprintln!(
        "bars: {} cases in {took:.1?}: {applied} applied, {duplicates} duplicates, {rejected:?}",
        test_cases()
    );
    assert_eq!(
        applied + duplicates + rejected.values().sum::<u64>(),
        u64::from(test_cases())
    );
    assert!(applied > 0, "no bar was applied");
    let reasons = rejected.values().filter(|n| **n > 0).count();
    assert!(reasons >= 4, "rejections by reason: {rejected:?}");
}

#[test]
fn a_planted_bug_deep_in_decision_requests_is_found() {
    // The bug: a valid request for a share-class symbol (a `.` in it) that asks for a
    // strategy override is refused as a feature outage (503), where it must be served.
    let hits = FirstHit::default();
    let message = failure_of(|| {
        requests_parse_or_are_refused_with_a_4xx(test_cases(), |b| {
            let n = hits.call();
            let r = parse_request(b)?;
            if r.symbol.as_str().contains('.') && r.strategy_override.is_some() {
                hits.hit(n);
                return Err(PredictError::Features(FeatureError::Unavailable(
                    "planted".into(),
                )));
            }
            Ok(r)
        });
    });
    hits.first("planted request bug");
    assert!(message.contains("503"), "{message}");
    assert!(message.contains("strategy_override"), "{message}");
}

#[test]
fn a_planted_bug_deep_in_bar_ingest_is_found() {
    // The bug: a well-formed bar with zero volume is acknowledged as appended but neither
    // applied nor counted (a lost bar).
    let live = live_features();
    let hits = FirstHit::default();
    let message = failure_of(|| {
        bars_are_applied_or_rejected_and_counted_once(test_cases(), &live, |l, b| {
            let n = hits.call();
            let bar = match Bar::from_json(b) {
                Ok(bar) => bar,
                Err(r) => return l.reject(r),
            };
            if bar.volume == 0.0 && bar.check(None).is_ok() {
                hits.hit(n);
                return Ok(Ingested::Appended);
            }
            l.ingest(&bar)
        });
    });
    hits.first("planted bar bug");
    assert!(message.contains("Appended"), "{message}");
}
