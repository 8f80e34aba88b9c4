"""Export a trained scikit-learn MLP as an ONNX model folder in MLflow's layout.

The graph is deliberately small and engine-friendly (MatMul, Add, Relu, Softmax). Input
standardization is part of the model — folded exactly into the first layer
(W' = W / std, b' = b - (mean / std) W), which saves two graph nodes per call — so the service
feeds raw features and a scaler can never drift from its network. Each folder holds:

* `model.onnx` — input `features` [N, width] float32, output `probabilities` [N, 3] float32;
* `MLmodel` — as MLflow writes it for the onnx flavor (signature as JSON text), plus a
  `metadata.tradeserve` block naming the role, version, input columns and their training means;
* `golden.json` — inputs and the outputs Python's onnxruntime gives for them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
CREATED = "2025-10-20 00:00:00.000000"  # fixed so that retraining is byte-reproducible


def build_graph(model, mean: np.ndarray, std: np.ndarray, width: int, name: str) -> onnx.ModelProto:
    coefs = [np.asarray(w, dtype=np.float64) for w in model.coefs_]
    intercepts = [np.asarray(b, dtype=np.float64) for b in model.intercepts_]
    # Fold (x - mean) / std into the first layer, in float64 before the float32 cast.
    intercepts[0] = intercepts[0] - (mean / std) @ coefs[0]
    coefs[0] = coefs[0] / std[:, None]
    inits = []
    nodes = []
    last = "features"
    layers = len(coefs)
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i}"))
        nodes.append(helper.make_node("MatMul", [last, f"w{i}"], [f"mm{i}"]))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"]))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"h{i + 1}"]))
            last = f"h{i + 1}"
        else:
            last = f"z{i}"
    nodes.append(helper.make_node("Softmax", [last], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="tradeserve-training")
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def mlmodel_text(role: str, version: str, columns: list[str], means: list[float],
                 classes: list[str], width: int, sha256: str) -> str:
    inputs = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, width]},
                          "name": "features"}])
    outputs = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]},
                           "name": "probabilities"}])
    uuid = hashlib.sha256(f"{role}/{version}/{sha256}".encode()).hexdigest()[:32]
    meta = {"role": role, "version": version, "input_columns": columns,
            "input_means": means, "output_classes": classes, "model_sha256": sha256}
    return "\n".join([
        "artifact_path: model",
        "flavors:",
        "  onnx:",
        "    code: null",
        "    data: model.onnx",
        f"    onnx_version: {onnx.__version__}",
        "    providers:",
        "    - CPUExecutionProvider",
        "  python_function:",
        "    data: model.onnx",
        "    loader_module: mlflow.onnx",
        "    python_version: 3.11.7",
        "metadata:",
        f"  tradeserve: {json.dumps(meta)}",
        f"model_uuid: {uuid}",
        "signature:",
        f"  inputs: {_yaml_str(inputs)}",
        f"  outputs: {_yaml_str(outputs)}",
        "  params: null",
        f"utc_time_created: {_yaml_str(CREATED)}",
        "",
    ])


def export(model, mean: np.ndarray, std: np.ndarray, role: str, version: str,
           columns: list[str], classes: list[str], golden_inputs: np.ndarray, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    width = len(columns)
    proto = build_graph(model, mean, std, width, f"tradeserve.{role}")
    data = proto.SerializeToString()
    (out_dir / "model.onnx").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (out_dir / "MLmodel").write_text(
        mlmodel_text(role, version, columns, [float(x) for x in mean], classes, width, sha))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = golden_inputs.astype(np.float32)
    y = session.run(["probabilities"], {"features": x})[0]
    golden = {"engine": f"onnxruntime {ort.__version__}", "inputs": x.tolist(), "outputs": y.tolist()}
    (out_dir / "golden.json").write_text(json.dumps(golden) + "\n")
    return {"sha256": sha, "session": session}


def run_onnx(session, x: np.ndarray) -> np.ndarray:
    return session.run(["probabilities"], {"features": x.astype(np.float32)})[0]
