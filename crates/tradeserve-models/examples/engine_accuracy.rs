//! How far the two in-process engines are from each other and from the exact answer, per bundled
//! model: the figures behind `onnx::DENSE_TOLERANCE` and docs/BENCHMARKS.md.
//!
//! For each model: the largest difference between the dense evaluator and tract on the golden
//! inputs, on the load-time check rows (golden plus 256 around them) and on 10,000 rows around
//! them; then each engine's largest distance from the exact answer (the model's weights in f64
//! throughout) on those 10,000 rows; last, dense vs tract on 10,000 standard-normal rows (what a
//! model without golden inputs is checked on). tract's rounding depends on the kernels it picks for the
//! CPU; `TRACT_CPU_ISA` picks others on the same machine:
//!
//! ```text
//! cargo run --release -p tradeserve-models --example engine_accuracy
//! TRACT_CPU_ISA=-avx512f,-avx512vnni,-avx512fp16 cargo run --release -p tradeserve-models --example engine_accuracy
//! TRACT_CPU_ISA=-avx512f,-avx512vnni,-avx512fp16,-fma,-avx2,-avx,-f16c cargo run --release -p tradeserve-models --example engine_accuracy
//! ```

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use tract_onnx::prelude::Framework;
use tradeserve_core::ports::InferenceModel;
use tradeserve_core::types::Role;
use tradeserve_models::dense::DenseMlp;
use tradeserve_models::engine::TractModel;
use tradeserve_models::model_dir::{self, input_columns};
use tradeserve_models::onnx::{CROSS_CHECK_ROWS, check_rows, max_difference};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn folder(role: Role, version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(role.as_str())
        .join(version)
}

fn golden_inputs(role: Role, version: &str) -> Result<Vec<f32>> {
    let bytes = std::fs::read(folder(role, version).join("golden.json"))?;
    Ok(model_dir::golden_inputs(&bytes))
}

/// Largest distance of `model`'s outputs from `dense`'s exact f64 answer over `rows`.
fn from_exact(model: &dyn InferenceModel, dense: &DenseMlp, rows: &[f32], w: usize) -> Result<f64> {
    let mut worst = 0.0f64;
    for row in rows.chunks_exact(w) {
        let got = model.predict(row)?;
        for (g, want) in got.iter().zip(dense.predict_f64(row)) {
            worst = worst.max((f64::from(*g) - want).abs());
        }
    }
    Ok(worst)
}

fn report(out: &mut impl Write, role: Role, version: &str) -> Result<()> {
    let bytes = std::fs::read(folder(role, version).join("model.onnx"))?;
    let width = input_columns(role).len();
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &bytes[..])?;
    let dense = DenseMlp::compile(&proto, "features", width).map_err(|e| e.to_string())?;
    let tract = TractModel::load(&bytes, "features", width)?;
    let golden = golden_inputs(role, version)?;
    let (load_rows, _) = check_rows(&golden, width, CROSS_CHECK_ROWS);
    let (rows, _) = check_rows(&golden, width, 10_000);
    let (normal, _) = check_rows(&[], width, 10_000);
    writeln!(
        out,
        "{:<28} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e}",
        format!("{role} v{version}"),
        max_difference(&dense, &tract, &golden, width)?,
        max_difference(&dense, &tract, &load_rows, width)?,
        max_difference(&dense, &tract, &rows, width)?,
        from_exact(&dense, &dense, &rows, width)?,
        from_exact(&tract, &dense, &rows, width)?,
        max_difference(&dense, &tract, &normal, width)?,
    )?;
    Ok(())
}

fn main() -> Result<()> {
    let kernels = std::env::var("TRACT_CPU_ISA").unwrap_or_else(|_| "(as probed)".into());
    let mut out = std::io::stdout().lock();
    writeln!(out, "TRACT_CPU_ISA={kernels}")?;
    writeln!(
        out,
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "model", "golden", "load", "10k", "dense-ex", "tract-ex", "normal"
    )?;
    for role in Role::ALL {
        for version in ["1", "2"] {
            report(&mut out, role, version)?;
        }
    }
    Ok(())
}
