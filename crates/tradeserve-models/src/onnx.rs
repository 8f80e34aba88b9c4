//! Choosing the engine of an in-process ONNX model: the dense-MLP evaluator where it applies
//! and agrees with tract, tract otherwise.
//!
//! Every graph is loaded by tract first, with all of tract's checks, so a model that tract
//! refuses is refused as before. A graph that is also a plain dense MLP ([`crate::dense`]) is
//! then run both ways on check rows: the model's reference rows (its golden inputs) and
//! [`CROSS_CHECK_ROWS`] seeded rows around them ([`check_rows`]). It is served by the dense
//! evaluator only if every output is within [`DENSE_TOLERANCE`] of tract's, and by tract
//! otherwise (logged as a warning, with the difference).
//!
//! The check is there to catch a graph the dense evaluator misreads (a weight, a layout, an
//! activation), which shows as a difference of whole percents; it must not trip on rounding.
//! tract's rounding depends on the CPU: its matrix kernels (AVX-512, AVX2+FMA, SSE, NEON) sum in
//! different orders, and on rows like the data tract itself is up to 1.2e-6 from the exact
//! answer (AVX2 kernels; 0.9e-6 with AVX-512), so a 1e-6 bound would pick the engine by CPU
//! model. The bound is DESIGN's for two engines' float32 arithmetic, 1e-5.
//!
//! A model without reference rows is served by tract: the check would have to run on rows
//! unlike the data (standard normal), and there it cannot fail. Far from the data the outputs
//! saturate: with one output bias of sideways_specialist v2 misread by 0.5 (or 2.0) the two
//! engines differ by 6e-6 (2.7e-5) on standard-normal rows, and on regime_detector v2 by
//! 8e-13, while rounding alone reaches 1.4e-4 there. A check that cannot fail does not choose.

use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tract_onnx::prelude::Framework;
use tradeserve_core::ports::{InferenceModel, ModelError};

use crate::dense::DenseMlp;
use crate::engine::{EngineError, TractModel};

/// Largest difference from tract the dense evaluator may show on any output, on rows like the
/// model's own data: DESIGN's bound between two engines' float32 arithmetic, eight times the
/// largest rounding difference measured on any of tract's x86 kernel sets (1.13e-6).
pub const DENSE_TOLERANCE: f32 = 1e-5;

/// The bound on standard-normal rows ([`check_rows`] without reference rows), for graphs built
/// in code, whose inputs are standard normal: on the bundled models, far from their data,
/// rounding alone reaches 1.4e-4 there on 10,000 rows (any x86 kernel set; docs/BENCHMARKS.md).
pub const STRUCTURE_TOLERANCE: f32 = 1e-3;

/// Generated rows each dense model is checked against tract on at load.
pub const CROSS_CHECK_ROWS: usize = 256;

/// Which engine in-process models may get (`models.engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    /// The dense evaluator where it applies and agrees with tract; tract otherwise.
    #[default]
    Auto,
    /// tract for every model.
    Tract,
}

impl std::str::FromStr for EngineChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(EngineChoice::Auto),
            "tract" => Ok(EngineChoice::Tract),
            other => Err(format!("engine {other:?}: expected auto or tract")),
        }
    }
}

static TRACT_ONLY: AtomicBool = AtomicBool::new(false);

/// Set the engine choice for every model loaded from now on in this process (the service sets
/// it once at start, from its config).
pub fn choose_engine(choice: EngineChoice) {
    TRACT_ONLY.store(choice == EngineChoice::Tract, Ordering::Relaxed);
}

/// An in-process ONNX model and the engine serving it.
pub enum OnnxModel {
    Dense(DenseMlp),
    Tract(Box<TractModel>),
}

impl OnnxModel {
    /// Load `bytes` (input `input_name`, `width` columns, 3 outputs) with tract, then serve it
    /// with the dense evaluator if it is a dense MLP that agrees with tract on check rows made
    /// from `reference` (row-major rows of `width`, maybe none).
    pub fn load(
        bytes: &[u8],
        input_name: &str,
        width: usize,
        reference: &[f32],
    ) -> Result<OnnxModel, EngineError> {
        let load = |e: tract_onnx::prelude::TractError| EngineError::Load(format!("{e:#}"));
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(load)?;
        let tract = TractModel::from_proto(&proto, input_name, width)?;
        if TRACT_ONLY.load(Ordering::Relaxed) {
            return Ok(OnnxModel::Tract(Box::new(tract)));
        }
        let dense = match DenseMlp::compile(&proto, input_name, width) {
            Ok(dense) => dense,
            Err(why) => {
                tracing::info!(reason = %why, "model served by tract: not a plain dense MLP");
                return Ok(OnnxModel::Tract(Box::new(tract)));
            }
        };
        Ok(OnnxModel::choose(dense, tract, reference, width))
    }

    /// The dense evaluator if it agrees with tract within [`DENSE_TOLERANCE`] on check rows
    /// made from `reference` ([`check_rows`]); tract otherwise, and without reference rows.
    pub fn choose(
        dense: DenseMlp,
        tract: TractModel,
        reference: &[f32],
        width: usize,
    ) -> OnnxModel {
        if reference.len() < width.max(1) {
            tracing::info!(
                "model served by tract: no golden inputs to check the dense evaluator against"
            );
            return OnnxModel::Tract(Box::new(tract));
        }
        let (rows, tolerance) = check_rows(reference, width, CROSS_CHECK_ROWS);
        match max_difference(&dense, &tract, &rows, width) {
            Ok(d) if d <= tolerance => OnnxModel::Dense(dense),
            Ok(d) => {
                tracing::warn!(
                    difference = d,
                    tolerance,
                    "model served by tract: the dense evaluator disagrees with it"
                );
                OnnxModel::Tract(Box::new(tract))
            }
            Err(e) => {
                tracing::warn!(error = %e, "model served by tract: the dense evaluator failed");
                OnnxModel::Tract(Box::new(tract))
            }
        }
    }

    /// `"dense"` or `"tract"`.
    pub fn engine(&self) -> &'static str {
        match self {
            OnnxModel::Dense(_) => "dense",
            OnnxModel::Tract(_) => "tract",
        }
    }
}

/// Rows to compare two engines on, and the tolerance that applies to them. With `reference`
/// rows: those, then `n` seeded rows each a reference row with every column moved by up to
/// about one standard deviation of that column (a sum of four uniforms, sd-scaled); without:
/// `n` standard-normal rows, and [`STRUCTURE_TOLERANCE`].
pub fn check_rows(reference: &[f32], width: usize, n: usize) -> (Vec<f32>, f32) {
    let mut rng = SmallRng::seed_from_u64(0x7ade_5e7e);
    let mut noise = move || (0..4).map(|_| rng.random_range(-0.5f32..0.5)).sum::<f32>();
    let count = reference.len().checked_div(width).unwrap_or(0);
    if count == 0 {
        let rows = (0..n * width).map(|_| noise()).collect();
        return (rows, STRUCTURE_TOLERANCE);
    }
    let column = |c: usize| reference.iter().skip(c).step_by(width).copied();
    let sd: Vec<f32> = (0..width)
        .map(|c| {
            let mean = column(c).sum::<f32>() / count as f32;
            (column(c).map(|v| (v - mean).powi(2)).sum::<f32>() / count as f32).sqrt()
        })
        .collect();
    let mut rows = reference.to_vec();
    for i in 0..n {
        let base = &reference[(i % count) * width..][..width];
        rows.extend(
            base.iter()
                .zip(&sd)
                .map(|(v, s)| v + s * noise() * 3f32.sqrt()),
        );
    }
    (rows, DENSE_TOLERANCE)
}

/// The largest difference between two models' outputs over `rows` (row-major, `width` wide).
pub fn max_difference(
    a: &dyn InferenceModel,
    b: &dyn InferenceModel,
    rows: &[f32],
    width: usize,
) -> Result<f32, ModelError> {
    let mut worst = 0.0f32;
    for row in rows.chunks_exact(width.max(1)) {
        let (x, y) = (a.predict(row)?, b.predict(row)?);
        for (p, q) in x.iter().zip(&y) {
            let d = (p - q).abs();
            if d.is_nan() {
                return Err(ModelError::BadOutput(x.to_vec()));
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}

impl InferenceModel for OnnxModel {
    fn predict(&self, input: &[f32]) -> Result<[f32; 3], ModelError> {
        match self {
            OnnxModel::Dense(m) => m.predict(input),
            OnnxModel::Tract(m) => m.predict(input),
        }
    }

    fn predict_batch(&self, rows: &[f32], width: usize) -> Result<Vec<[f32; 3]>, ModelError> {
        match self {
            OnnxModel::Dense(m) => m.predict_batch(rows, width),
            OnnxModel::Tract(m) => m.predict_batch(rows, width),
        }
    }
}
