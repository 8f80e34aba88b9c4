"""Reference explanations with Python's `shap` package, for the service's explanation test.

    python scripts/shap_reference.py --models models --version 1 --rows rows.json --out ref.json

`rows.json` is `{"rows": [{"features": [12], "hit_rates": [3], "action": "BUY"}, …]}`. For
each row this computes *exact* Shapley values (`shap.explainers.Exact`, all 2^15 coalitions)
of the blended probability of `action`, through the same ONNX ensemble run by onnxruntime
(regime detector → meta-controller → specialists → blend), against the baseline the service
uses: the regime detector's training means of the features and the meta-controller's
training means of the hit rates (from each model's MLmodel metadata). Writes
`{"rows": [{"base_value": b, "values": [15], "output_value": f(x)}, …]}`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import shap

ROLES = ["regime_detector", "meta_controller", "bull_specialist", "bear_specialist",
         "sideways_specialist"]
ACTIONS = ["BUY", "SELL", "HOLD"]


def metadata(folder: Path) -> dict:
    line = next(l for l in (folder / "MLmodel").read_text().splitlines()
                if l.strip().startswith("tradeserve:"))
    return json.loads(line.split("tradeserve:", 1)[1])


def normalize(p: np.ndarray) -> np.ndarray:
    p = p.astype(np.float64)
    return p / p.sum(axis=1, keepdims=True)


def entropy(p: np.ndarray) -> np.ndarray:
    safe = np.where(p > 0.0, p, 1.0)
    return -(p * np.log(safe)).sum(axis=1) / np.log(3.0)


class Ensemble:
    def __init__(self, models: Path, version: str):
        self.sessions = {}
        for role in ROLES:
            folder = models / role / version
            self.sessions[role] = ort.InferenceSession(
                str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        means_f = metadata(models / "regime_detector" / version)["input_means"]
        means_m = metadata(models / "meta_controller" / version)["input_means"]
        self.baseline = np.array(means_f + means_m[4:7], dtype=np.float64)

    def run(self, role: str, x: np.ndarray) -> np.ndarray:
        out = self.sessions[role].run(["probabilities"], {"features": x.astype(np.float32)})[0]
        return normalize(out)

    def blended(self, players: np.ndarray) -> np.ndarray:
        """Blended P(BUY, SELL, HOLD) for rows of 15 players (12 features, 3 hit rates)."""
        x, hits = players[:, :12], players[:, 12:]
        regime = self.run("regime_detector", x)
        meta = np.column_stack([regime, entropy(regime), hits, x[:, 4], x[:, 2]])
        weights = self.run("meta_controller", meta)
        out = sum(weights[:, [i]] * self.run(r, x)
                  for i, r in enumerate(["bull_specialist", "bear_specialist", "sideways_specialist"]))
        return out / out.sum(axis=1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--version", default="1")
    p.add_argument("--rows", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    ens = Ensemble(a.models, a.version)
    rows = json.loads(a.rows.read_text())["rows"]
    masker = shap.maskers.Independent(ens.baseline[None, :], max_samples=1)
    out = []
    for r in rows:
        k = ACTIONS.index(r["action"])
        x = np.array(r["features"] + r["hit_rates"], dtype=np.float64)[None, :]
        explainer = shap.explainers.Exact(lambda z: ens.blended(z)[:, k], masker)
        e = explainer(x)
        out.append({"base_value": float(np.asarray(e.base_values).reshape(-1)[0]),
                    "values": [float(v) for v in e.values[0]],
                    "output_value": float(ens.blended(x)[0, k])})
    a.out.write_text(json.dumps({"shap_version": shap.__version__, "rows": out}) + "\n")


if __name__ == "__main__":
    main()
