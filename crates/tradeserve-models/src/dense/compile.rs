//! Recognizing a dense MLP in an ONNX graph and turning it into a list of [`Step`]s.
//!
//! Accepted: one float32 input, a chain of nodes each consuming the previous one's output,
//! made of `MatMul` by a 2-D initializer, `Gemm` (`transA = 0`), `Add` of an initializer
//! broadcast along the row, and the activations `Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`,
//! `Softmax` (last axis) and `Identity`, ending in the graph's one output. Anything else —
//! another op, a branch, a weight computed in the graph, external or non-float data — is
//! [`NotDense`], and the model stays on tract.

use std::collections::HashMap;

use tract_onnx::pb;

use super::Step;

/// Why a graph is not a plain dense MLP (the model is then served by tract).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotDense {
    #[error("op {0} is not one the dense evaluator runs")]
    Op(String),
    #[error("node {0:?} does not continue the chain from the input")]
    Branch(String),
    #[error("{0}")]
    Shape(String),
    #[error("initializer {0:?} is not float32 data held in the model")]
    Data(String),
    #[error("attribute {0} is not supported")]
    Attribute(String),
}

/// A weight or bias held in the graph.
struct Constant<'a> {
    dims: Vec<usize>,
    proto: &'a pb::TensorProto,
}

impl Constant<'_> {
    /// The values as f32, from `float_data` or little-endian `raw_data`.
    fn values(&self) -> Result<Vec<f32>, NotDense> {
        let t = self.proto;
        let bad = || NotDense::Data(t.name.clone());
        if t.data_type != pb::tensor_proto::DataType::Float as i32 || !t.external_data.is_empty() {
            return Err(bad());
        }
        let n: usize = self.dims.iter().product();
        let values: Vec<f32> = if t.raw_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        if values.len() != n {
            return Err(bad());
        }
        Ok(values)
    }
}

/// The steps of the chain from `input` (of `width` columns) to the graph's output, and the
/// output's width.
pub(super) fn compile(
    graph: &pb::GraphProto,
    input: &str,
    width: usize,
) -> Result<(Vec<Step>, usize), NotDense> {
    let constants: HashMap<&str, Constant> = graph
        .initializer
        .iter()
        .map(|t| {
            let dims = t.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0));
            let c = Constant {
                dims: dims.collect(),
                proto: t,
            };
            (t.name.as_str(), c)
        })
        .collect();
    let mut current = input.to_owned();
    let mut cols = width;
    let mut steps = Vec::with_capacity(graph.node.len());
    for node in &graph.node {
        let (data, others) = split_inputs(node, &current)?;
        let (step, out) = step(node, data, &others, &constants, cols)?;
        steps.extend(step);
        cols = out;
        current = match node.output.as_slice() {
            [one] => one.clone(),
            _ => return Err(NotDense::Branch(node.name.clone())),
        };
    }
    match graph.output.as_slice() {
        [out] if out.name == current => Ok((steps, cols)),
        _ => Err(NotDense::Branch("graph output".into())),
    }
}

/// The node's input from the chain (its position) and its other inputs.
fn split_inputs<'a>(
    node: &'a pb::NodeProto,
    current: &str,
) -> Result<(usize, Vec<&'a str>), NotDense> {
    let data = node
        .input
        .iter()
        .position(|i| i == current)
        .ok_or_else(|| NotDense::Branch(node.name.clone()))?;
    let others = node
        .input
        .iter()
        .enumerate()
        .filter(|&(i, name)| i != data && !name.is_empty())
        .map(|(_, name)| name.as_str())
        .collect();
    Ok((data, others))
}

fn constant<'c>(
    constants: &'c HashMap<&str, Constant>,
    name: &str,
) -> Result<&'c Constant<'c>, NotDense> {
    constants
        .get(name)
        .ok_or_else(|| NotDense::Branch(format!("{name} is computed in the graph")))
}

/// One node as steps, and the width of its output.
fn step(
    node: &pb::NodeProto,
    data: usize,
    others: &[&str],
    constants: &HashMap<&str, Constant>,
    cols: usize,
) -> Result<(Vec<Step>, usize), NotDense> {
    let unary = |s: Step| {
        if others.is_empty() {
            Ok((vec![s], cols))
        } else {
            Err(NotDense::Op(format!(
                "{} with {} inputs",
                node.op_type,
                others.len() + 1
            )))
        }
    };
    match (node.op_type.as_str(), node.domain.as_str()) {
        ("MatMul", "") if data == 0 && others.len() == 1 => {
            let w = constant(constants, others[0])?;
            linear(w, false, cols).map(|(s, out)| (vec![s], out))
        }
        ("Gemm", "") if data == 0 => gemm(node, others, constants, cols),
        ("Add", "") if others.len() == 1 => {
            let b = constant(constants, others[0])?;
            Ok((vec![Step::Add(row_vector(b, cols, 1.0)?)], cols))
        }
        ("Relu", "") => unary(Step::Relu),
        ("LeakyRelu", "") => unary(Step::LeakyRelu(float_attr(node, "alpha", 0.01)?)),
        ("Sigmoid", "") => unary(Step::Sigmoid),
        ("Tanh", "") => unary(Step::Tanh),
        ("Identity", "") => unary(Step::Identity),
        ("Softmax", "") => match int_attr(node, "axis", -1)? {
            -1 | 1 => unary(Step::Softmax),
            other => Err(NotDense::Attribute(format!("Softmax axis {other}"))),
        },
        (op, domain) => Err(NotDense::Op(format!("{domain}{op}"))),
    }
}

/// `Gemm`: `alpha · x · B (or Bᵀ) + beta · C`.
fn gemm(
    node: &pb::NodeProto,
    others: &[&str],
    constants: &HashMap<&str, Constant>,
    cols: usize,
) -> Result<(Vec<Step>, usize), NotDense> {
    if int_attr(node, "transA", 0)? != 0 {
        return Err(NotDense::Attribute("Gemm transA = 1".into()));
    }
    let (alpha, beta) = (
        float_attr(node, "alpha", 1.0)?,
        float_attr(node, "beta", 1.0)?,
    );
    let trans_b = int_attr(node, "transB", 0)? != 0;
    let (b, c) = match others {
        [b] => (constant(constants, b)?, None),
        [b, c] => (constant(constants, b)?, Some(constant(constants, c)?)),
        _ => return Err(NotDense::Op("Gemm without weights".into())),
    };
    let (linear, out) = linear(b, trans_b, cols)?;
    let mut steps = vec![linear];
    if alpha != 1.0 {
        steps.push(Step::Scale(alpha));
    }
    if let Some(c) = c {
        steps.push(Step::Add(row_vector(c, out, beta)?));
    }
    Ok((steps, out))
}

/// A `[cols, out]` weight (or `[out, cols]` transposed) as a row-major `[cols, out]` matrix.
fn linear(w: &Constant, transposed: bool, cols: usize) -> Result<(Step, usize), NotDense> {
    let (rows, out) = match (w.dims.as_slice(), transposed) {
        (&[r, o], false) => (r, o),
        (&[o, r], true) => (r, o),
        _ => return Err(NotDense::Shape(format!("weight of shape {:?}", w.dims))),
    };
    if rows != cols || out == 0 {
        return Err(NotDense::Shape(format!(
            "weight of shape {:?} after {cols} columns",
            w.dims
        )));
    }
    let values = w.values()?;
    let weights: Vec<f64> = if transposed {
        (0..rows * out)
            .map(|k| f64::from(values[(k % out) * rows + k / out]))
            .collect()
    } else {
        values.into_iter().map(f64::from).collect()
    };
    Ok((
        Step::Linear {
            weights,
            inputs: rows,
        },
        out,
    ))
}

/// A bias broadcast along the row: `[cols]`, `[1, cols]` or a single value, times `scale`.
fn row_vector(b: &Constant, cols: usize, scale: f32) -> Result<Vec<f32>, NotDense> {
    let values = b.values()?;
    let fits = matches!(b.dims.as_slice(), [n] | [1, n] if *n == cols)
        || (values.len() == 1 && b.dims.len() <= 2);
    if !fits {
        return Err(NotDense::Shape(format!(
            "bias of shape {:?} for {cols} columns",
            b.dims
        )));
    }
    let scaled = |v: f32| if scale == 1.0 { v } else { scale * v };
    Ok(match values.as_slice() {
        [one] => vec![scaled(*one); cols],
        all => all.iter().map(|&v| scaled(v)).collect(),
    })
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn float_attr(node: &pb::NodeProto, name: &str, default: f32) -> Result<f32, NotDense> {
    match attr(node, name) {
        None => Ok(default),
        Some(a) if a.r#type == pb::attribute_proto::AttributeType::Float as i32 => Ok(a.f),
        Some(_) => Err(NotDense::Attribute(format!("{} {name}", node.op_type))),
    }
}

fn int_attr(node: &pb::NodeProto, name: &str, default: i64) -> Result<i64, NotDense> {
    match attr(node, name) {
        None => Ok(default),
        Some(a) if a.r#type == pb::attribute_proto::AttributeType::Int as i32 => Ok(a.i),
        Some(_) => Err(NotDense::Attribute(format!("{} {name}", node.op_type))),
    }
}
