//! The dense-MLP evaluator: the plain multilayer perceptrons the bundled models are, run
//! without a graph interpreter.
//!
//! A graph made only of `MatMul`/`Gemm`, bias `Add`s and element-wise activations
//! (`dense::compile` says exactly which) is compiled once at load into a list of steps over
//! two small buffers. One call is a few hundred multiply-adds and no allocation, where tract
//! spends most of its ~3 µs per call on per-node bookkeeping (run state, output tensors,
//! packing each MatMul's input). Each layer's sums are kept in f64 (a product of two f32 is
//! exact there) and rounded once, in input order with plain multiply and add (Rust never
//! fuses them): a result does not depend on the CPU's vector width, and it is within 1e-6 of
//! the exact answer (tests/dense.rs) and closer to it than tract's on every bundled model
//! (docs/BENCHMARKS.md, `examples/engine_accuracy.rs`).
//!
//! Whether it serves a model is decided in [`crate::onnx`]: only after it matches tract on
//! the model's own checks; any other graph is served by tract.

mod compile;

use tract_onnx::pb;
use tradeserve_core::ports::{InferenceModel, ModelError};

pub use compile::NotDense;

/// One operation of the chain, applied to the current row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// `y = x · W`, `W` row-major `[inputs, outputs]`: the graph's f32 weights, held as f64
    /// (exactly) so a call converts nothing.
    Linear {
        weights: Vec<f64>,
        inputs: usize,
    },
    /// `y = x + b` (`b` as wide as the row).
    Add(Vec<f32>),
    /// `y = alpha · x`.
    Scale(f32),
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    Softmax,
    Identity,
}

/// Rows up to this wide are computed in a buffer on the stack.
const STACK_WIDTH: usize = 64;

/// A compiled dense MLP with input `[1, width]` and output `[1, 3]`.
#[derive(Debug, Clone)]
pub struct DenseMlp {
    steps: Vec<Step>,
    width: usize,
    /// The widest row between two steps.
    widest: usize,
}

impl DenseMlp {
    /// Compile `model` if it is a plain dense MLP from `input` (of `width` columns) to 3
    /// outputs.
    pub fn compile(model: &pb::ModelProto, input: &str, width: usize) -> Result<Self, NotDense> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| NotDense::Branch("no graph".into()))?;
        let (steps, out) = compile::compile(graph, input, width)?;
        if out != 3 {
            return Err(NotDense::Shape(format!("{out} outputs, expected 3")));
        }
        let widest = steps
            .iter()
            .filter_map(|s| match s {
                Step::Linear { weights, inputs } => Some(weights.len() / inputs),
                _ => None,
            })
            .fold(width, usize::max);
        Ok(DenseMlp {
            steps,
            width,
            widest,
        })
    }

    /// Run the steps on `input`, with `a` and `b` as the rows and `acc` as a layer's sums
    /// (each at least `widest` long).
    fn run(&self, input: &[f32], a: &mut [f32], b: &mut [f32], acc: &mut [f64]) -> [f32; 3] {
        let (mut cur, mut next) = (a, b);
        let mut n = input.len();
        cur[..n].copy_from_slice(input);
        for step in &self.steps {
            match step {
                Step::Linear { weights, inputs } => {
                    let out = weights.len() / inputs;
                    linear(&cur[..n], weights, &mut acc[..out], &mut next[..out]);
                    std::mem::swap(&mut cur, &mut next);
                    n = out;
                }
                other => apply(other, &mut cur[..n]),
            }
        }
        [cur[0], cur[1], cur[2]]
    }
}

impl DenseMlp {
    /// The same steps in f64 throughout: the exact answer that tests and
    /// `examples/engine_accuracy.rs` measure the engines' rounding against.
    pub fn predict_f64(&self, input: &[f32]) -> Vec<f64> {
        let mut row: Vec<f64> = input.iter().map(|&v| f64::from(v)).collect();
        for step in &self.steps {
            row = match step {
                Step::Linear { weights, inputs } => {
                    let out = weights.len() / inputs;
                    (0..out)
                        .map(|j| {
                            row.iter()
                                .enumerate()
                                .map(|(i, &x)| x * weights[i * out + j])
                                .sum()
                        })
                        .collect()
                }
                Step::Add(b) => row.iter().zip(b).map(|(v, &b)| v + f64::from(b)).collect(),
                Step::Scale(a) => row.iter().map(|v| v * f64::from(*a)).collect(),
                Step::Relu => row.iter().map(|v| v.max(0.0)).collect(),
                Step::LeakyRelu(a) => row
                    .iter()
                    .map(|&v| if v < 0.0 { f64::from(*a) * v } else { v })
                    .collect(),
                Step::Sigmoid => row.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
                Step::Tanh => row.iter().map(|v| v.tanh()).collect(),
                Step::Softmax => {
                    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    e.iter().map(|v| v / sum).collect()
                }
                Step::Identity => row,
            };
        }
        row
    }
}

/// `y = x · W` with `W` row-major `[x.len(), y.len()]`. Each product of two f32 is exact in
/// f64 and the sums are kept there, so `y` is the exact dot product rounded once to f32:
/// with standardization folded into the first layer its terms are large and cancel, and
/// tract's f32 sums are up to 1.2e-6 of a probability from the exact answer
/// (docs/BENCHMARKS.md).
fn linear(x: &[f32], weights: &[f64], acc: &mut [f64], y: &mut [f32]) {
    acc.fill(0.0);
    for (&xi, row) in x.iter().zip(weights.chunks_exact(y.len())) {
        let xi = f64::from(xi);
        for (aj, &w) in acc.iter_mut().zip(row) {
            *aj += xi * w;
        }
    }
    for (yj, aj) in y.iter_mut().zip(acc.iter()) {
        *yj = *aj as f32;
    }
}

/// An element-wise or row-wise step, in place.
fn apply(step: &Step, row: &mut [f32]) {
    match step {
        Step::Add(bias) => row.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
        Step::Scale(alpha) => row.iter_mut().for_each(|v| *v *= alpha),
        Step::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
        Step::LeakyRelu(alpha) => row
            .iter_mut()
            .for_each(|v| *v = if *v < 0.0 { alpha * *v } else { *v }),
        Step::Sigmoid => row
            .iter_mut()
            .for_each(|v| *v = (1.0 / (1.0 + (-f64::from(*v)).exp())) as f32),
        Step::Tanh => row
            .iter_mut()
            .for_each(|v| *v = f64::from(*v).tanh() as f32),
        Step::Softmax => {
            // In f64, rounded once: the row is short (the output layer).
            let max = f64::from(row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            row.iter_mut()
                .for_each(|v| *v = ((f64::from(*v) - max).exp() / sum) as f32);
        }
        Step::Identity | Step::Linear { .. } => {}
    }
}

impl InferenceModel for DenseMlp {
    fn predict(&self, input: &[f32]) -> Result<[f32; 3], ModelError> {
        if input.len() != self.width {
            return Err(ModelError::InputWidth {
                expected: self.width,
                got: input.len(),
            });
        }
        if self.widest <= STACK_WIDTH {
            let (mut a, mut b) = ([0.0f32; STACK_WIDTH], [0.0f32; STACK_WIDTH]);
            let mut acc = [0.0f64; STACK_WIDTH];
            return Ok(self.run(input, &mut a, &mut b, &mut acc));
        }
        let (mut a, mut b) = (vec![0.0f32; self.widest], vec![0.0f32; self.widest]);
        let mut acc = vec![0.0f64; self.widest];
        Ok(self.run(input, &mut a, &mut b, &mut acc))
    }
}
