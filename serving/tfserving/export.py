"""Export one verified ONNX model folder as a TF Serving SavedModel: `tradeserve tfserving export`.

Usage: python export.py MODEL_DIR BASE NAME VERSION

Writes BASE/NAME/VERSION/ (saved_model.pb, variables/, and assets.extra/golden.json) — the
layout TF Serving's model base path expects — built aside and renamed into place, so a server
watching BASE never sees half a version.

The TradeServe models are small MLPs; this translates exactly the ONNX operators they use
(MatMul, Add, Relu, Softmax over the last axis, opset 13+) into a TensorFlow function with the
weights as constants, and refuses any other operator by name. The signature `serving_default`
takes `features` (float32, [batch, width]) and returns `probabilities` (float32, [batch, 3]).

Before renaming, the SavedModel is loaded back with TensorFlow and the folder's golden vectors
run through its serving signature: every output within 1e-5 of the golden outputs, or nothing
is written. Prints one JSON line: path, max difference, rows checked.
"""

import json
import os
import shutil
import sys
import uuid

import numpy as np
import onnx
from onnx import numpy_helper

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

TOLERANCE = 1e-5
SUPPORTED = {"MatMul", "Add", "Relu", "Softmax"}


def translate(model):
    """A function features -> probabilities computing the ONNX graph with TensorFlow ops."""
    graph = model.graph
    unsupported = sorted({n.op_type for n in graph.node} - SUPPORTED)
    if unsupported:
        raise SystemExit("cannot export: unsupported ONNX operators " + ", ".join(unsupported))
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise SystemExit("cannot export: expected one input and one output")
    consts = {i.name: tf.constant(numpy_helper.to_array(i).astype(np.float32)) for i in graph.initializer}
    source, sink = graph.input[0].name, graph.output[0].name
    width = graph.input[0].type.tensor_type.shape.dim[1].dim_value

    def run(x):
        values = dict(consts)
        values[source] = x
        for node in graph.node:
            a = [values[i] for i in node.input]
            if node.op_type == "MatMul":
                out = tf.linalg.matmul(a[0], a[1])
            elif node.op_type == "Add":
                out = tf.math.add(a[0], a[1])
            elif node.op_type == "Relu":
                out = tf.nn.relu(a[0])
            else:
                axis = next((at.i for at in node.attribute if at.name == "axis"), -1)
                if axis not in (-1, 1):
                    raise SystemExit("cannot export: Softmax over axis %d" % axis)
                out = tf.nn.softmax(a[0], axis=-1)
            values[node.output[0]] = out
        return values[sink]

    return run, width


def export(model_dir, base, name, version):
    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    run, width = translate(model)

    class Exported(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32, name="features")])
        def serve(self, features):
            return {"probabilities": run(features)}

    module = Exported()
    target = os.path.join(base, name, version)
    aside = os.path.join(base, name, ".tradeserve-" + uuid.uuid4().hex)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        tf.saved_model.save(module, aside, signatures={"serving_default": module.serve})
        golden_path = os.path.join(model_dir, "golden.json")
        worst, rows = verify(aside, golden_path)
        extra = os.path.join(aside, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        shutil.copyfile(golden_path, os.path.join(extra, "golden.json"))
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(aside, target)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    print(json.dumps({"path": target, "max_diff": worst, "rows": rows}))


def verify(path, golden_path):
    """The golden vectors through the SavedModel as TF Serving would load it."""
    with open(golden_path) as f:
        golden = json.load(f)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    x = tf.constant(np.asarray(golden["inputs"], dtype=np.float32))
    got = serve(features=x)["probabilities"].numpy()
    want = np.asarray(golden["outputs"], dtype=np.float32)
    worst = float(np.max(np.abs(got - want)))
    if not worst <= TOLERANCE:
        raise SystemExit("the SavedModel differs from the golden outputs by %g (> %g)" % (worst, TOLERANCE))
    return worst, int(x.shape[0])


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    export(*sys.argv[1:])
