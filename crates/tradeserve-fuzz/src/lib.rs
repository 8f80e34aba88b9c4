//! Input generators for property-based fuzzing (proptest) of everything that parses client
//! input: random bytes, random JSON built from the API's own field names and values, and
//! byte-level mutations of valid bodies ([`body`]); a seeded runner ([`fuzz`]); and the
//! properties the parsers must hold ([`properties`]).
//!
//! The test command runs [`test_cases`] cases of each property (a fixed number, the same cases
//! on every machine) and proves on a planted bug that they find one; the million-case runs are
//! a benchmark (`cargo bench -p tradeserve-fuzz --bench million`, everything optimized), whose
//! time is reported, never asserted. The generators are their own crate so that
//! `[profile.dev.package]` can optimize them in test builds (a case takes ~240 µs to generate
//! unoptimized). Test support, like `tradeserve-testkit`: a failing case panics.

#![allow(clippy::expect_used, clippy::panic)]

pub mod properties;
mod shaped;

pub use shaped::{bar, request};

use std::time::{Duration, Instant};

use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, RngSeed, TestCaseError, TestRunner,
};
use serde_json::{Value, json};

/// Field names the API knows, so random objects often reach the validation past the parser.
pub const FIELDS: &[&str] = &[
    "symbol",
    "timestamp",
    "risk_check",
    "explain",
    "strategy_override",
    "client_id",
    "experiment_id",
    "name",
    "description",
    "control",
    "treatment",
    "split",
    "bucketing",
    "metrics",
    "rollout_id",
    "candidate",
    "gates",
    "auto_promote",
    "stage",
    "decision_id",
    "realized_return",
    "pnl",
    "reason",
    "bars",
    "end",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "bull_specialist",
    "regime_detector",
    "min_decisions",
    "max_error_rate",
];

/// A JSON scalar: any, or one of the values the API knows.
pub fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![Just(0.5), Just(-1.0), Just(1e308), Just(1.0)].prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("AAPL"),
            Just("BRK.B"),
            Just("2025-10-20T15:00:00Z"),
            Just("2025-10-20"),
            Just("bull"),
            Just("BUY"),
            Just("client"),
            Just("1"),
            Just("2"),
            Just("shadow"),
            Just("decision_id"),
            Just("01a22c81-dbe0-719e-acaa-428d28952e35"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

pub fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            hash_map(
                prop_oneof![
                    proptest::sample::select(FIELDS).prop_map(str::to_owned),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with API field names (the most useful shape to fuzz validation with).
pub fn object() -> impl Strategy<Value = Value> {
    hash_map(
        proptest::sample::select(FIELDS).prop_map(str::to_owned),
        json_value(),
        0..7,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Valid bodies, to mutate.
pub const SEEDS: &[&str] = &[
    r#"{"symbol":"AAPL","timestamp":"2025-10-20T15:00:00Z","risk_check":false}"#,
    r#"{"symbol":"MSFT","explain":false,"strategy_override":"bull"}"#,
    r#"{"symbol":"AAPL","end":"2025-10-20T15:00:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}"#,
    r#"{"experiment_id":"e1","control":{"bull_specialist":"1"},"treatment":{"bull_specialist":"2"},"split":0.5}"#,
];

pub fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(SEEDS),
        vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(|(seed, edits)| {
            let mut b = seed.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                let i = at.index(b.len() + 1);
                match kind {
                    0 if i < b.len() => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ if i < b.len() => {
                        b.remove(i);
                    }
                    _ => b.push(byte),
                }
            }
            b
        })
}

fn bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("a JSON value serializes")
}

/// A request body: random bytes, random JSON, an object of API field names, a mutated valid
/// body, or a decision request or bar with its fields mostly valid ([`request`], [`bar`]).
/// Boxed: its code is compiled (optimized) here, not in each unoptimized test that uses it,
/// where the nested strategy types made frames deep enough to overflow a test thread's stack.
pub fn body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..48),
        2 => json_value().prop_map(bytes).boxed(),
        3 => object().prop_map(bytes).boxed(),
        3 => mutated().boxed(),
        3 => request().prop_map(bytes).boxed(),
        3 => bar().prop_map(bytes).boxed(),
    ]
    .boxed()
}

/// Cases of each property in the test command: few enough to finish in seconds unoptimized on
/// a slow machine, and enough to find the planted bugs (`tests/parsers.rs`).
pub const TEST_CASES: u32 = 20_000;

/// Cases of each property in the benchmark.
pub const MILLION: u32 = 1_000_000;

/// `FUZZ_CASES` when set (a longer local run), else `default`.
pub fn cases_or(default: u32) -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The test command's case count: [`TEST_CASES`], or `FUZZ_CASES`.
pub fn test_cases() -> u32 {
    cases_or(TEST_CASES)
}

/// The seed of every run. proptest's default seed is random per run (`RngSeed::Random`), which
/// made two runs of the same test see different cases.
pub const SEED: u64 = 0x7ade_5e7e_f022;

/// A runner of `cases` cases, the same ones every run on every machine (a failure reproduces),
/// with no persistence files.
pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        rng_seed: RngSeed::Fixed(SEED),
        ..RunnerConfig::default()
    })
}

/// Run `cases` of `strategy` through `check`; panics on a failing case (shrunk). Returns how
/// long it took, to be printed: a run's time depends on the machine and is never asserted.
pub fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> Duration {
    let started = Instant::now();
    let mut r = runner(cases);
    if let Err(e) = r.run(&strategy, check) {
        panic!("{name}: {e}");
    }
    started.elapsed()
}
