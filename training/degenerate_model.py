"""Write deliberately bad specialists, candidates that a rollout's gates must catch:

* `--kind hold` (the default): it answers HOLD with certainty whatever the input;
* `--kind contrarian`: version 1's network with its BUY and SELL outputs swapped, so it trades
  against the signal it was trained on (a backtest shows it: lower Sharpe, deeper drawdown).

    python training/degenerate_model.py --models MODELS_DIR --version 9 [--kind contrarian]

For each specialist role it writes `MODELS_DIR/<role>/<version>/` in the bundled layout
(`model.onnx`, `MLmodel`, `golden.json`), built with the same exporter as the real models and
with golden vectors on the inputs of that role's version 1, so the service verifies and loads
it like any other version.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import numpy_helper

from export import export

SPECIALISTS = ["bull_specialist", "bear_specialist", "sideways_specialist"]
CLASSES = ["BUY", "SELL", "HOLD"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--version", default="9")
    p.add_argument("--kind", choices=["hold", "contrarian"], default="hold")
    a = p.parse_args()
    for role in SPECIALISTS:
        reference = a.models / role / "1"
        golden = json.loads((reference / "golden.json").read_text())
        x = np.asarray(golden["inputs"], dtype=np.float64)
        meta_line = next(l for l in (reference / "MLmodel").read_text().splitlines()
                         if l.strip().startswith("tradeserve:"))
        meta = json.loads(meta_line.split("tradeserve:", 1)[1])
        width = x.shape[1]
        if a.kind == "contrarian":
            model = contrarian(reference / "model.onnx")
        else:
            # One linear layer: zero weights, a bias that puts all the mass on HOLD.
            model = SimpleNamespace(coefs_=[np.zeros((width, 3))], intercepts_=[np.array([0.0, 0.0, 12.0])])
        export(model, np.zeros(width), np.ones(width), role, a.version, meta["input_columns"],
               CLASSES, x, a.models / role / a.version)


def contrarian(path: Path) -> SimpleNamespace:
    """The network of `path` (the exporter's w0, b0, w1, b1, ... with the scaler folded in, so
    it is exported again with mean 0 and std 1) with its BUY and SELL outputs swapped."""
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in onnx.load(path).graph.initializer}
    layers = len([n for n in inits if n.startswith("w")])
    coefs = [inits[f"w{i}"] for i in range(layers)]
    intercepts = [inits[f"b{i}"] for i in range(layers)]
    swap = [1, 0, 2]
    coefs[-1] = coefs[-1][:, swap]
    intercepts[-1] = intercepts[-1][swap]
    return SimpleNamespace(coefs_=coefs, intercepts_=intercepts)


if __name__ == "__main__":
    main()
