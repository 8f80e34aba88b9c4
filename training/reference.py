"""Write each model version's training reference distributions, for the service's drift monitor.

For every model folder whose inputs are the bar features (the regime detector and the three
specialists), `reference.json` holds, per input feature, the deciles of that feature over the
training bars (the first TRAIN_DAYS days of data/bars.csv) as bin edges, and the share of the
training bars in each bin. A bar's bin is the number of edges at or below its value (numpy's
`searchsorted(..., side="right")`, Rust's `partition_point(|e| e <= x)`), so the service bins
live features exactly as here. The file names the model it belongs to (`model_sha256`); the
service checks that, and the file's shape, when it loads the model.

    python training/reference.py            # every version under models/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import features as F  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROLES = ["regime_detector", "bull_specialist", "bear_specialist", "sideways_specialist"]
QUANTILES = [q / 10 for q in range(1, 10)]


def distributions(X: np.ndarray) -> dict:
    """Per feature: strictly increasing decile edges and the share of rows in each bin."""
    out = {}
    for j, name in enumerate(F.FEATURES):
        x = X[:, j]
        edges = np.unique(np.quantile(x, QUANTILES))
        counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
        out[name] = {
            "edges": [float(e) for e in edges],
            "fractions": [float(c) / len(x) for c in counts],
        }
    return out


def model_sha256(folder: Path) -> str:
    line = next(l for l in (folder / "MLmodel").read_text().splitlines()
                if l.strip().startswith("tradeserve:"))
    return json.loads(line.split("tradeserve:", 1)[1])["model_sha256"]


def write_references(t: dict, train_days: int, models: Path) -> None:
    """`reference.json` in every version folder of ROLES under `models`."""
    train = t["day"] < train_days
    dist = distributions(t["X"][train])
    for role in ROLES:
        for folder in sorted((models / role).iterdir()):
            if not (folder / "MLmodel").is_file():
                continue
            doc = {
                "model_sha256": model_sha256(folder),
                "data": f"data/bars.csv, the first {train_days} trading days (training)",
                "rows": int(train.sum()),
                "features": dist,
            }
            (folder / "reference.json").write_text(json.dumps(doc, indent=1) + "\n")


def main() -> None:
    import train  # the table and split training used

    bars = train.load_bars(ROOT / "data" / "bars.csv")
    t = train.build_table(bars)
    write_references(t, train.TRAIN_DAYS, ROOT / "models")


if __name__ == "__main__":
    main()
