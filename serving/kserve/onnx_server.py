"""Serve TradeServe's ONNX models on KServe's Python model server.

Every `<models>/<role>/<version>/model.onnx` (the MLflow layout of `models/` and of the model
cache) becomes one model named `<role>-<version>`, run by ONNX Runtime on the CPU. KServe
answers both of its REST protocols for it:

- the Open Inference Protocol (v2): `POST /v2/models/<role>-<version>/infer` with one FP32
  tensor `features` of shape [n, width]; the answer is the FP32 tensor `probabilities`, [n, 3];
- its v1 protocol, which is TF Serving's REST predict API: `POST /v1/models/<name>:predict`
  with `{"instances": [[...], ...]}` (or `{"inputs": ...}`), answered with `predictions`
  (or `outputs`).

KServe 0.21 has no versioned infer path (`/versions/<v>/infer` is "not supported yet"), so
the version is part of the model name; point TradeServe at it with
`models.kserve_v2.model = "{role}-{version}"` and `versioned = false`.

    python serving/kserve/onnx_server.py --models models --http_port 8085 --enable_grpc false

With `--grpc_port 8081` (and gRPC left on) it also serves the protocol's gRPC binding
(`inference.GRPCInferenceService/ModelInfer`), for `models.kserve_v2.protocol = "grpc"`.

`--host` (default 127.0.0.1) is the address it listens on.

Requires `pip install kserve onnxruntime` (no torch).
"""

import argparse
import pathlib
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


def bind_to(host: str) -> None:
    """KServe 0.21 hard-codes host 0.0.0.0 for its REST server and [::] for its gRPC server;
    listen on `host` instead."""
    original = uvicorn.Config.__init__

    def init(self, app, *args, **kwargs):
        kwargs["host"] = host
        original(self, app, *args, **kwargs)

    uvicorn.Config.__init__ = init

    from grpc.aio import _server

    add_port = _server.Server.add_insecure_port

    def add_insecure_port(self, address):
        return add_port(self, address.replace("[::]:", f"{host}:", 1))

    _server.Server.add_insecure_port = add_insecure_port


class OnnxModel(Model):
    """One ONNX file: FP32 rows in, three probabilities per row out."""

    def __init__(self, name: str, path: pathlib.Path):
        super().__init__(name)
        self.path = path
        self.session = None
        self.input = None

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self.ready = True
        return self.ready

    def run(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        return self.session.run(None, {self.input: rows})[0].astype(np.float32)

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            out = self.run(payload.inputs[0].as_numpy())
            tensor = InferOutput("probabilities", list(out.shape), "FP32")
            tensor.set_data_from_numpy(out, binary_data=False)
            return InferResponse(
                response_id=payload.id or "0", model_name=self.name, infer_outputs=[tensor]
            )
        # v1 (TF Serving's REST predict API): row form or columnar form.
        if "instances" in payload:
            return {"predictions": self.run(payload["instances"]).tolist()}
        return {"outputs": self.run(payload["inputs"]).tolist()}


def models_in(root: pathlib.Path):
    for onnx in sorted(root.glob("*/*/model.onnx")):
        role, version = onnx.parent.parent.name, onnx.parent.name
        yield OnnxModel(f"{role}-{version}", onnx)


def main() -> int:
    # KServe reads its own flags (--http_port, --enable_grpc, ...) from the same command line.
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--models", required=True, help="folder of <role>/<version>/model.onnx")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    args, _ = parser.parse_known_args()
    bind_to(args.host)
    models = []
    for m in models_in(pathlib.Path(args.models)):
        m.load()
        models.append(m)
    if not models:
        print(f"no <role>/<version>/model.onnx under {args.models}", file=sys.stderr)
        return 1
    ModelServer().start(models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
