//! The cost of fleet-wide measurements: recording one decision on an arm (the request path,
//! unchanged by sharing), and, once per `control.fleet_interval` per arm, copying and
//! encoding a replica's share (the publisher) and decoding and merging one (each reader, per
//! replica). The arm is full: latencies spread over 1–2,000 µs, a 20,000-outcome reservoir.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use tradeserve_core::arm_stats::{ArmState, Observation, RESERVOIR, UnitStats};
use tradeserve_core::experiment::Arm;
use tradeserve_core::types::Action;

fn observation(i: u64) -> Observation {
    Observation {
        action: [Action::Buy, Action::Sell, Action::Hold][(i % 3) as usize],
        confidence: 0.6,
        approved: Some(!i.is_multiple_of(10)),
        latency_us: Some(1 + (i * 7919) % 2000),
        inference_us: 10 + i % 40,
    }
}

fn full_unit() -> UnitStats {
    let u = UnitStats::new();
    let arm = u.arm(Arm::Treatment);
    for i in 0..(RESERVOIR as u64 * 3) {
        arm.record(&observation(i));
        arm.record_outcome(((i * 37 % 101) as f64 - 50.0) / 1e4);
    }
    u
}

fn bench(c: &mut Criterion) {
    let unit = full_unit();
    let arm = unit.arm(Arm::Treatment);
    let mut i = 0u64;
    c.bench_function("arm_record_decision", |b| {
        b.iter(|| {
            i += 1;
            arm.record(black_box(&observation(i)));
        })
    });
    // The copy is what holds the arm's lock (a request recording on it waits this long).
    c.bench_function("arm_share_copy", |b| b.iter(|| black_box(arm.state())));
    c.bench_function("arm_share_copy_and_encode_without_sample", |b| {
        b.iter(|| {
            let mut s = arm.state();
            s.reservoir.clear();
            black_box(serde_json::to_string(&s).unwrap_or_default())
        })
    });
    let mut compact = arm.state();
    compact.reservoir.clear();
    let json = serde_json::to_string(&compact).unwrap_or_default();
    eprintln!(
        "one arm's share without its sample: {} bytes of JSON",
        json.len()
    );
    c.bench_function("arm_share_decode_and_merge", |b| {
        b.iter(|| {
            let mut into = ArmState::default();
            if let Ok(s) = serde_json::from_str::<ArmState>(black_box(&json)) {
                into.merge(&s);
            }
            black_box(into.decisions)
        })
    });
    let full = arm.state();
    c.bench_function("arm_merge_two_full_samples", |b| {
        b.iter(|| {
            let mut a = full.clone();
            a.merge(black_box(&full));
            black_box(a.reservoir.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
