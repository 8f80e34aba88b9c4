//! A million cases of each parser property ([`tradeserve_fuzz::properties`]), optimized: the
//! long run behind the test command's fixed few thousand. It fails (exit 101) on a failing
//! case, like the tests, and prints how long each run took; the time is a measurement of the
//! machine, reported in docs/BENCHMARKS.md, never a pass mark.
//!
//! `cargo bench -p tradeserve-fuzz --bench million` (`FUZZ_CASES=N` for another count).

#![allow(clippy::print_stdout)]

use tradeserve_fuzz::properties::{
    bars_are_applied_or_rejected_and_counted_once, live_features, parse_request,
    requests_parse_or_are_refused_with_a_4xx,
};
use tradeserve_fuzz::{MILLION, cases_or};

fn main() {
    let cases = cases_or(MILLION);
    let per_case = |took: std::time::Duration| took.as_secs_f64() * 1e6 / f64::from(cases);

    let took = requests_parse_or_are_refused_with_a_4xx(cases, parse_request);
    println!(
        "decision requests: {cases} cases in {took:.1?} ({:.2} µs a case)",
        per_case(took)
    );

    let live = live_features();
    let took = bars_are_applied_or_rejected_and_counted_once(cases, &live, |l, b| l.ingest_json(b));
    let (applied, duplicates, rejected) = live.counts();
    println!(
        "bars: {cases} cases in {took:.1?} ({:.2} µs a case): {applied} applied, {duplicates} duplicates, {} rejected",
        per_case(took),
        rejected.values().sum::<u64>()
    );
}
