"""Write a deliberately bad specialist: it answers HOLD with certainty whatever the input.

Tests use it as a candidate that a rollout's gates must catch:

    python training/degenerate_model.py --models MODELS_DIR --version 9

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

from export import export

SPECIALISTS = ["bull_specialist", "bear_specialist", "sideways_specialist"]
CLASSES = ["BUY", "SELL", "HOLD"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--version", default="9")
    a = p.parse_args()
    for role in SPECIALISTS:
        reference = a.models / role / "1"
        golden = json.loads((reference / "golden.json").read_text())
        x = np.asarray(golden["inputs"], dtype=np.float64)
        meta_line = next(l for l in (reference / "MLmodel").read_text().splitlines()
                         if l.strip().startswith("tradeserve:"))
        meta = json.loads(meta_line.split("tradeserve:", 1)[1])
        width = x.shape[1]
        # One linear layer: zero weights, a bias that puts all the mass on HOLD.
        model = SimpleNamespace(coefs_=[np.zeros((width, 3))], intercepts_=[np.array([0.0, 0.0, 12.0])])
        export(model, np.zeros(width), np.ones(width), role, a.version, meta["input_columns"],
               CLASSES, x, a.models / role / a.version)


if __name__ == "__main__":
    main()
