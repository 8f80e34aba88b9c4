//! The dense-MLP evaluator against tract: every bundled model is compiled to it and agrees with
//! tract within 1e-6 on its golden inputs and within [`DENSE_TOLERANCE`] (1e-5) on 10,000 random
//! rows like its data; it is within 1e-6 of the exact (f64) answer; the other activations and
//! `Gemm` forms agree with tract on graphs built here; any other graph stays on tract, and so
//! do a dense MLP that disagrees with tract on its check rows (a disagreement built on purpose)
//! and one without golden inputs to check on.
//!
//! tract's rounding depends on its kernels, so `scripts/test.sh` also runs this file with
//! tract's AVX2+FMA and SSE kernels (`TRACT_CPU_ISA`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use tract_onnx::pb;
use tract_onnx::prelude::Framework;
use tradeserve_core::ports::InferenceModel;
use tradeserve_core::types::Role;
use tradeserve_models::dense::{DenseMlp, NotDense};
use tradeserve_models::engine::TractModel;
use tradeserve_models::model_dir::{self, input_columns};
use tradeserve_models::onnx::{DENSE_TOLERANCE, OnnxModel, check_rows, max_difference};

fn folder(role: Role, version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(role.as_str())
        .join(version)
}

fn golden_inputs(role: Role, version: &str) -> Vec<f32> {
    let bytes = std::fs::read(folder(role, version).join("golden.json")).unwrap();
    let rows = model_dir::golden_inputs(&bytes);
    assert!(!rows.is_empty(), "{role} v{version}: no golden inputs");
    rows
}

/// Both engines of one bundled model.
fn engines(role: Role, version: &str) -> (DenseMlp, TractModel, usize) {
    let bytes = std::fs::read(folder(role, version).join("model.onnx")).unwrap();
    let width = input_columns(role).len();
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .unwrap();
    let dense = DenseMlp::compile(&proto, "features", width).unwrap();
    let tract = TractModel::load(&bytes, "features", width).unwrap();
    (dense, tract, width)
}

/// Largest distance of the dense evaluator's outputs from the exact answer over `rows`.
fn error_from_exact(dense: &DenseMlp, rows: &[f32], w: usize) -> f64 {
    rows.chunks_exact(w)
        .flat_map(|row| {
            let got = dense.predict(row).unwrap();
            let want = dense.predict_f64(row);
            (0..3).map(move |k| (f64::from(got[k]) - want[k]).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn every_bundled_model_is_served_by_the_dense_evaluator() {
    for role in Role::ALL {
        for version in ["1", "2"] {
            let dir = folder(role, version);
            let loaded =
                tradeserve_models::load_model_dir(&dir, role, "test".into()).expect("loads");
            let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
            let width = input_columns(role).len();
            let golden = golden_inputs(role, version);
            let model = OnnxModel::load(&bytes, "features", width, &golden).unwrap();
            assert_eq!(model.engine(), "dense", "{role} v{version}");
            // Without golden inputs there is nothing like the data to check on: tract.
            let blind = OnnxModel::load(&bytes, "features", width, &[]).unwrap();
            assert_eq!(
                blind.engine(),
                "tract",
                "{role} v{version}, no reference rows"
            );
            let x = &golden[..width];
            assert_eq!(
                loaded.model.predict(x).unwrap(),
                model.predict(x).unwrap(),
                "{role} v{version}: the folder loader serves the same engine"
            );
        }
    }
}

/// The dense evaluator against tract on a model's golden inputs: these are rows of the data, and
/// on them every kernel set of tract measured (AVX-512, AVX2+FMA, SSE) is within 2.4e-7.
const GOLDEN_AGREEMENT: f32 = 1e-6;

/// The dense evaluator's distance from the exact answer (its own weights in f64 throughout). It
/// does not depend on the CPU: its sums are f64, in a fixed order.
const EXACT_AGREEMENT: f64 = 1e-6;

#[test]
fn dense_agrees_with_tract_on_golden_and_10000_random_rows_per_model() {
    for role in Role::ALL {
        for version in ["1", "2"] {
            let (dense, tract, width) = engines(role, version);
            let golden = golden_inputs(role, version);
            let on_golden = max_difference(&dense, &tract, &golden, width).unwrap();
            assert!(
                on_golden <= GOLDEN_AGREEMENT,
                "{role} v{version}: {on_golden:e}"
            );
            let (rows, tolerance) = check_rows(&golden, width, 10_000);
            assert_eq!(rows.len(), golden.len() + 10_000 * width);
            assert_eq!(tolerance, DENSE_TOLERANCE);
            let on_random = max_difference(&dense, &tract, &rows, width).unwrap();
            assert!(
                on_random <= DENSE_TOLERANCE,
                "{role} v{version}: {on_random:e}"
            );
            // The rows really vary: the models' outputs cover a range of probabilities.
            let outs: Vec<f32> = rows
                .chunks_exact(width)
                .map(|r| dense.predict(r).unwrap()[0])
                .collect();
            let (lo, hi) = outs
                .iter()
                .fold((1.0f32, 0.0f32), |(l, h), &p| (l.min(p), h.max(p)));
            assert!(hi - lo > 0.1, "{role} v{version}: outputs {lo}..{hi}");
        }
    }
}

#[test]
fn dense_is_within_1e_6_of_the_exact_answer_on_10000_random_rows_per_model() {
    for role in Role::ALL {
        for version in ["1", "2"] {
            let (dense, _, width) = engines(role, version);
            let (rows, _) = check_rows(&golden_inputs(role, version), width, 10_000);
            let d = error_from_exact(&dense, &rows, width);
            assert!(d <= EXACT_AGREEMENT, "{role} v{version}: dense {d:e}");
            // Not vacuous: the f32 result is rounded, so it is never exact everywhere.
            assert!(d > 0.0, "{role} v{version}");
        }
    }
}

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A float32 initializer with seeded values in -1..1 (as raw little-endian bytes if `raw`).
fn weight(name: &str, dims: &[i64], seed: u32, raw: bool) -> pb::TensorProto {
    let n = dims.iter().product::<i64>() as u32;
    let values: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut t = pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        ..Default::default()
    };
    if raw {
        t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    } else {
        t.float_data = values;
    }
    t
}

fn attr_f(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 1,
        f,
        ..Default::default()
    }
}

fn attr_i(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    }
}

fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: format!("{op}_{output}"),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn model(nodes: Vec<pb::NodeProto>, init: Vec<pb::TensorProto>, out: &str) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(pb::GraphProto {
            node: nodes,
            initializer: init,
            input: vec![value_info("x", &[1, 4])],
            output: vec![value_info(out, &[1, 3])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Compile `m` both ways and compare them on 1,000 standard-normal rows.
fn agrees_with_tract(m: &pb::ModelProto) -> f32 {
    let dense = DenseMlp::compile(m, "x", 4).expect("a dense graph");
    let tract = TractModel::from_proto(m, "x", 4).expect("tract loads it");
    let (rows, _) = check_rows(&[], 4, 1_000);
    max_difference(&dense, &tract, &rows, 4).unwrap()
}

#[test]
fn gemm_with_transposed_weights_alpha_beta_and_every_activation_agrees_with_tract() {
    let m = model(
        vec![
            node(
                "Gemm",
                &["x", "w1", "b1"],
                "h1",
                vec![
                    attr_i("transB", 1),
                    attr_f("alpha", 0.5),
                    attr_f("beta", 2.0),
                ],
            ),
            node("Tanh", &["h1"], "a1", vec![]),
            node("Gemm", &["a1", "w2"], "h2", vec![]),
            node("LeakyRelu", &["h2"], "a2", vec![attr_f("alpha", 0.1)]),
            node("MatMul", &["a2", "w3"], "h3", vec![]),
            node("Add", &["b3", "h3"], "h4", vec![]),
            node("Sigmoid", &["h4"], "a4", vec![]),
            node("Identity", &["a4"], "y", vec![]),
        ],
        vec![
            weight("w1", &[6, 4], 1, false),
            weight("b1", &[6], 2, true),
            weight("w2", &[6, 5], 3, true),
            weight("w3", &[5, 3], 4, false),
            weight("b3", &[1, 3], 5, false),
        ],
        "y",
    );
    let d = agrees_with_tract(&m);
    assert!(d <= DENSE_TOLERANCE, "{d:e}");
}

#[test]
fn relu_and_softmax_with_a_scalar_bias_agree_with_tract() {
    let m = model(
        vec![
            node("MatMul", &["x", "w1"], "h1", vec![]),
            node("Add", &["h1", "b1"], "h2", vec![]),
            node("Relu", &["h2"], "a2", vec![]),
            node("MatMul", &["a2", "w2"], "h3", vec![]),
            node("Softmax", &["h3"], "y", vec![attr_i("axis", 1)]),
        ],
        vec![
            weight("w1", &[4, 8], 6, true),
            weight("b1", &[1], 7, false),
            weight("w2", &[8, 3], 8, false),
        ],
        "y",
    );
    let d = agrees_with_tract(&m);
    assert!(d <= DENSE_TOLERANCE, "{d:e}");
}

#[test]
fn any_other_graph_stays_on_tract() {
    let base = || {
        vec![
            weight("w1", &[4, 3], 1, false),
            weight("b1", &[3], 2, false),
        ]
    };
    // An op the evaluator does not run.
    let other_op = model(
        vec![
            node("MatMul", &["x", "w1"], "h1", vec![]),
            node("Exp", &["h1"], "y", vec![]),
        ],
        base(),
        "y",
    );
    assert!(matches!(DenseMlp::compile(&other_op, "x", 4), Err(NotDense::Op(op)) if op == "Exp"));
    // A branch: the chain's value used twice.
    let branch = model(
        vec![
            node("MatMul", &["x", "w1"], "h1", vec![]),
            node("Add", &["h1", "h1"], "y", vec![]),
        ],
        base(),
        "y",
    );
    assert!(matches!(
        DenseMlp::compile(&branch, "x", 4),
        Err(NotDense::Branch(_))
    ));
    // Softmax over another axis, and a weight that does not fit the row.
    let axis = model(
        vec![
            node("MatMul", &["x", "w1"], "h1", vec![]),
            node("Softmax", &["h1"], "y", vec![attr_i("axis", 0)]),
        ],
        base(),
        "y",
    );
    assert!(matches!(
        DenseMlp::compile(&axis, "x", 4),
        Err(NotDense::Attribute(_))
    ));
    assert!(matches!(
        DenseMlp::compile(&other_op, "x", 5),
        Err(NotDense::Shape(_))
    ));
    // Served, by tract, with tract's answers.
    let bytes = prost::Message::encode_to_vec(&other_op);
    let served = OnnxModel::load(&bytes, "x", 4, &[]).unwrap();
    assert_eq!(served.engine(), "tract");
    let tract = TractModel::from_proto(&other_op, "x", 4).unwrap();
    let row = [0.1f32, -0.2, 0.3, 0.4];
    assert_eq!(served.predict(&row).unwrap(), tract.predict(&row).unwrap());
}

/// A copy of `m` with `delta` added to the first value of its initializer `name`.
fn with_nudged_weight(m: &pb::ModelProto, name: &str, delta: f32) -> pb::ModelProto {
    let mut m = m.clone();
    let graph = m.graph.as_mut().unwrap();
    let t = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap();
    if t.raw_data.is_empty() {
        t.float_data[0] += delta;
    } else {
        let first = f32::from_le_bytes(t.raw_data[..4].try_into().unwrap()) + delta;
        t.raw_data[..4].copy_from_slice(&first.to_le_bytes());
    }
    m
}

#[test]
fn a_dense_mlp_that_disagrees_with_tract_on_its_check_rows_is_served_by_tract() {
    // The disagreement is built, not found in rounding: the dense evaluator is compiled from
    // the model with one output bias moved by 0.5 (a misread weight), tract from the model
    // itself. Their answers differ by whole percents — thousands of times the bound — on
    // any CPU, and the load-time check must hand the model to tract.
    let (role, version) = (Role::SidewaysSpecialist, "2");
    let bytes = std::fs::read(folder(role, version).join("model.onnx")).unwrap();
    let width = input_columns(role).len();
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .unwrap();
    let misread =
        DenseMlp::compile(&with_nudged_weight(&proto, "b2", 0.5), "features", width).unwrap();
    let tract = || TractModel::from_proto(&proto, "features", width).unwrap();
    let golden = golden_inputs(role, version);
    let (rows, tolerance) = check_rows(&golden, width, 256);
    assert_eq!(tolerance, DENSE_TOLERANCE);
    let d = max_difference(&misread, &tract(), &rows, width).unwrap();
    assert!(d > 1e3 * DENSE_TOLERANCE, "{d:e}");

    let served = OnnxModel::choose(misread, tract(), &golden, width);
    assert_eq!(served.engine(), "tract");
    let reference = tract();
    for row in rows.chunks_exact(width).take(64) {
        assert_eq!(
            served.predict(row).unwrap(),
            reference.predict(row).unwrap()
        );
    }
    // The same choice with the model read right: served dense.
    let dense = DenseMlp::compile(&proto, "features", width).unwrap();
    assert_eq!(
        OnnxModel::choose(dense, tract(), &golden, width).engine(),
        "dense"
    );
    // Without reference rows the misread would not show (far from the data the outputs
    // saturate: 6e-6 on standard-normal rows), so no dense evaluator is chosen blind.
    let misread =
        DenseMlp::compile(&with_nudged_weight(&proto, "b2", 0.5), "features", width).unwrap();
    assert_eq!(
        OnnxModel::choose(misread, tract(), &[], width).engine(),
        "tract"
    );
}
