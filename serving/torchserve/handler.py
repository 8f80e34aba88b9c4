"""TorchServe handler for TradeServe's ONNX models: ONNX Runtime inside TorchServe.

Packaged into a `.mar` by `tradeserve torchserve package` (torch-model-archiver) with the
version's `model.onnx`, and `golden.json` when the version has one. At load it opens the ONNX
file and, when golden vectors are there, checks them (a model that does not reproduce its own
golden outputs refuses to load, so TorchServe never marks it READY).

Requests: `POST /predictions/<model>/<version>` with `{"data": [[x0, x1, ...], ...]}` (one or
more rows); the answer is `[[p0, p1, p2], ...]`, one row per input row. With TorchServe's
server-side batching (`batch_size`, `max_batch_delay` at registration) the handler receives
several requests at once and runs all their rows as one ONNX Runtime call.

It imports no torch and does not subclass BaseHandler (which does): TorchServe's worker only
needs `initialize(context)` and `handle(data, context)`.
"""

import json
import os

import numpy as np
import onnxruntime as ort

GOLDEN_TOLERANCE = 1e-5


class OnnxHandler:
    def __init__(self):
        self.session = None
        self.input = None
        self.initialized = False

    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(model_dir, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        golden = os.path.join(model_dir, "golden.json")
        if os.path.exists(golden):
            with open(golden) as f:
                g = json.load(f)
            got = self.run(np.asarray(g["inputs"], dtype=np.float32))
            worst = float(np.max(np.abs(got - np.asarray(g["outputs"], dtype=np.float32))))
            if not worst <= GOLDEN_TOLERANCE:
                raise RuntimeError(f"golden vectors differ by {worst:e} (> {GOLDEN_TOLERANCE:e})")
        self.initialized = True

    def run(self, rows):
        return self.session.run(None, {self.input: rows})[0].astype(np.float32)

    def handle(self, data, context):
        # One entry per request TorchServe batched together; each carries its own rows.
        bodies = []
        for request in data:
            body = request.get("body") or request.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            rows = body["data"] if isinstance(body, dict) else body
            bodies.append(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))
        counts = [len(b) for b in bodies]
        out = self.run(np.concatenate(bodies)) if bodies else np.empty((0, 3), np.float32)
        answers, start = [], 0
        for n in counts:
            answers.append(out[start : start + n].tolist())
            start += n
        return answers


_service = OnnxHandler()


def handle(data, context):
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
