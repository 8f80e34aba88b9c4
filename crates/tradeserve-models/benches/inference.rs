//! Inference cost: one model call and a batch (the served engine, the dense evaluator for the
//! bundled models, and tract), the whole five-model ensemble for one decision,
//! and one explanation (`explain: true`).
//!
//! `cargo bench -p tradeserve-models --bench inference`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use time::OffsetDateTime;
use tradeserve_core::pipeline::evaluate;
use tradeserve_core::ports::FeatureSnapshot;
use tradeserve_core::ports::InferenceModel;
use tradeserve_core::types::Role;
use tradeserve_models::engine::TractModel;
use tradeserve_models::{BundledModels, VersionSelection};

fn bench(c: &mut Criterion) {
    let models = BundledModels::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let x = [
        0.0005f32, 0.001, 0.002, 0.004, 0.0008, 0.0009, 0.9, 0.55, 0.001, 0.002, 0.0015, 0.3,
    ];
    for version in ["1", "2"] {
        let m = models.load(Role::BullSpecialist, version).unwrap();
        let onnx = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/bull_specialist")
                .join(version)
                .join("model.onnx"),
        )
        .unwrap();
        let tract = TractModel::load(&onnx, "features", 12).unwrap();
        c.bench_function(&format!("tract bull_specialist v{version} predict"), |b| {
            b.iter(|| tract.predict(black_box(&x)).unwrap())
        });
        c.bench_function(
            &format!("bull_specialist v{version} predict (served engine)"),
            |b| b.iter(|| m.model.predict(black_box(&x)).unwrap()),
        );
        let set = models.load_set(&VersionSelection::all(version)).unwrap();
        let snapshot = FeatureSnapshot {
            as_of: OffsetDateTime::UNIX_EPOCH,
            price: 100.0,
            features: x.map(f64::from),
            hit_rates: [0.5, 0.4, 0.6],
        };
        c.bench_function(&format!("ensemble v{version} evaluate"), |b| {
            b.iter(|| evaluate(black_box(&set), black_box(&snapshot), None).unwrap())
        });
        let rows: Vec<f32> = (0..256).flat_map(|_| x).collect();
        c.bench_function(
            &format!("bull_specialist v{version} predict_batch 256 (served engine)"),
            |b| b.iter(|| m.model.predict_batch(black_box(&rows), 12).unwrap()),
        );
        c.bench_function(
            &format!("tract bull_specialist v{version} predict_batch 256"),
            |b| b.iter(|| tract.predict_batch(black_box(&rows), 12).unwrap()),
        );
        let action = evaluate(&set, &snapshot, None).unwrap().action;
        let config = tradeserve_core::explain::ExplainConfig::default();
        c.bench_function(&format!("explain v{version} (64 permutations)"), |b| {
            b.iter(|| {
                tradeserve_core::explain::explain(black_box(&set), &snapshot, None, action, &config)
                    .unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
