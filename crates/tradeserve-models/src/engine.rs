//! The general inference engine: `tract-onnx`, pure Rust, in process (every graph loads here;
//! plain dense MLPs are then served by [`crate::dense`], see [`crate::onnx`]).
//!
//! A model is parsed, its single input pinned to `[1, width]` float32, optimized and turned
//! into a runnable plan once at load. The plan is `Send + Sync`. Building a run state costs
//! about as much as running a small MLP, so a model whose ops are all stateless keeps one
//! state per thread and reuses it; a model with any stateful op (recurrent layers carry
//! hidden state between calls) gets a fresh state on every call.
//!
//! A second plan, pinned to `[BATCH, width]`, runs many rows in one call (explanations):
//! fewer rows are padded, more are cut into batches. It takes a fresh state per call.

use std::cell::RefCell;
use std::sync::Arc;

use thread_local::ThreadLocal;
use tract_onnx::prelude::*;
use tradeserve_core::ports::{InferenceModel, ModelError};

type Plan = Arc<TypedSimplePlan>;

/// Rows per call of the batched plan.
pub const BATCH: usize = 64;
type State = TypedSimpleState;

/// A loaded ONNX model with batch-1 float32 input of a fixed width and 3 float32 outputs.
pub struct TractModel {
    plan: Plan,
    width: usize,
    /// Per-thread reusable run states; `None` when the graph has stateful ops.
    states: Option<ThreadLocal<RefCell<State>>>,
    /// The same graph for `[BATCH, width]`.
    batched: Plan,
}

/// Why an ONNX graph cannot serve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("cannot load ONNX graph: {0}")]
    Load(String),
    #[error("ONNX graph has {inputs} inputs and {outputs} outputs; expected 1 and 1")]
    Arity { inputs: usize, outputs: usize },
    #[error("ONNX input is named {found:?}, expected {expected:?}")]
    InputName { expected: String, found: String },
    #[error("ONNX output shape is {0}, expected [1, 3]")]
    OutputShape(String),
}

impl TractModel {
    /// Load an ONNX graph from bytes and check its input name and output shape.
    pub fn load(bytes: &[u8], input_name: &str, width: usize) -> Result<TractModel, EngineError> {
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| EngineError::Load(format!("{e:#}")))?;
        TractModel::from_proto(&proto, input_name, width)
    }

    /// Load a parsed ONNX graph and check its input name and output shape.
    pub fn from_proto(
        proto: &tract_onnx::pb::ModelProto,
        input_name: &str,
        width: usize,
    ) -> Result<TractModel, EngineError> {
        let load = |e: TractError| EngineError::Load(format!("{e:#}"));
        let model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(load)?;
        let (inputs, outputs) = (model.inputs.len(), model.outputs.len());
        if inputs != 1 || outputs != 1 {
            return Err(EngineError::Arity { inputs, outputs });
        }
        let name = model.node(model.inputs[0].node).name.clone();
        if name != input_name {
            return Err(EngineError::InputName {
                expected: input_name.to_owned(),
                found: name,
            });
        }
        let batched = model
            .clone()
            .with_input_fact(0, f32::fact([BATCH, width]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(load)?;
        let typed = model
            .with_input_fact(0, f32::fact([1, width]).into())
            .and_then(|m| m.into_optimized())
            .map_err(load)?;
        let out = typed.output_fact(0).map_err(load)?;
        if out.datum_type != f32::datum_type() || out.shape.as_concrete() != Some(&[1, 3][..]) {
            return Err(EngineError::OutputShape(format!(
                "{:?} {:?}",
                out.datum_type, out.shape
            )));
        }
        let plan = typed.into_runnable().map_err(load)?;
        let stateless = plan
            .spawn()
            .map_err(load)?
            .op_states
            .iter()
            .all(Option::is_none);
        Ok(TractModel {
            plan,
            width,
            states: stateless.then(ThreadLocal::new),
            batched,
        })
    }

    /// Whether run states are reused across calls (all ops stateless).
    pub fn reuses_state(&self) -> bool {
        self.states.is_some()
    }

    fn run(&self, input: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let Some(states) = &self.states else {
            return self.plan.run(input);
        };
        let cell = states.get_or_try(|| self.plan.spawn().map(RefCell::new))?;
        match cell.try_borrow_mut() {
            Ok(mut state) => state.run(input),
            // Re-entered on this thread (cannot happen for a plain MLP call): use a fresh state.
            Err(_) => self.plan.run(input),
        }
    }
}

fn first_output(out: &TVec<TValue>) -> Result<Vec<f32>, ModelError> {
    let infer = |e: TractError| ModelError::Inference(format!("{e:#}"));
    let values = out
        .first()
        .ok_or_else(|| ModelError::Inference("no output".into()))?;
    let view = values.try_as_plain_ram().map_err(infer)?;
    Ok(view.as_slice::<f32>().map_err(infer)?.to_vec())
}

impl InferenceModel for TractModel {
    fn predict_batch(&self, rows: &[f32], width: usize) -> Result<Vec<[f32; 3]>, ModelError> {
        if width != self.width || !rows.len().is_multiple_of(width) {
            return Err(ModelError::InputWidth {
                expected: self.width,
                got: if width == 0 { rows.len() } else { width },
            });
        }
        let infer = |e: TractError| ModelError::Inference(format!("{e:#}"));
        let n = rows.len() / width;
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0.0f32; BATCH * width];
        for chunk in rows.chunks(BATCH * width) {
            let k = chunk.len() / width;
            buf[..chunk.len()].copy_from_slice(chunk);
            buf[chunk.len()..].fill(0.0);
            let tensor = Tensor::from_shape(&[BATCH, width], &buf).map_err(infer)?;
            let values = first_output(&self.batched.run(tvec!(tensor.into())).map_err(infer)?)?;
            if values.len() != BATCH * 3 {
                return Err(ModelError::BadOutput(values));
            }
            out.extend(values.chunks(3).take(k).map(|p| [p[0], p[1], p[2]]));
        }
        Ok(out)
    }

    fn predict(&self, input: &[f32]) -> Result<[f32; 3], ModelError> {
        if input.len() != self.width {
            return Err(ModelError::InputWidth {
                expected: self.width,
                got: input.len(),
            });
        }
        let infer = |e: TractError| ModelError::Inference(format!("{e:#}"));
        let tensor = Tensor::from_shape(&[1, self.width], input).map_err(infer)?;
        let out = self.run(tvec!(tensor.into())).map_err(infer)?;
        let values = out
            .first()
            .ok_or_else(|| ModelError::Inference("no output".into()))?;
        let view = values.try_as_plain_ram().map_err(infer)?;
        match view.as_slice::<f32>().map_err(infer)? {
            [a, b, c] => Ok([*a, *b, *c]),
            other => Err(ModelError::BadOutput(other.to_vec())),
        }
    }
}
