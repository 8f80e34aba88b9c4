"""Experiment assignment test vectors, computed with Python's `mmh3` (an implementation
independent of the service's Rust one).

    python scripts/assignment_vectors.py --write docs/assignment_vectors.json   # regenerate
    python scripts/assignment_vectors.py --check docs/assignment_vectors.json   # verify

The rule: bucket = murmur3_x86_32(salt + ":" + key, seed 0) % 10000, unsigned;
treatment when bucket < traffic_split * 10000. `symbol_date` keys are SYMBOL:YYYY-MM-DD (UTC).
"""

from __future__ import annotations

import argparse
import json
import sys

import mmh3

SPLITS = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0]


def bucket(salt: str, key: str) -> int:
    return mmh3.hash(f"{salt}:{key}".encode(), 0, signed=False) % 10000


def arms(b: int) -> dict[str, str]:
    return {str(s): ("treatment" if b < s * 10000 else "control") for s in SPLITS}


def vectors() -> list[dict]:
    units = [
        ("symbol_date", "AAPL:2025-10-21"),
        ("symbol_date", "MSFT:2025-10-21"),
        ("symbol_date", "AAPL:2025-10-22"),
        ("symbol_date", "BRK.B:2025-01-02"),
        ("symbol_date", "SPY:2026-11-26"),
        ("symbol", "AAPL"),
        ("symbol", "NVDA"),
        ("symbol", "BF-B"),
        ("client", "desk-7"),
        ("client", "anonymous"),
        ("client", "algo/émigré-β"),
        ("decision", "01a216dd-1bc7-7449-b1d3-2eab0f76fd4d"),
        ("decision", "00000000-0000-0000-0000-000000000000"),
    ]
    salts = ["exp-42", "ro-canary-2025", "", "salt with spaces"]
    out = []
    for salt in salts:
        for bucketing, key in units:
            h = mmh3.hash(f"{salt}:{key}".encode(), 0, signed=False)
            b = h % 10000
            out.append({"salt": salt, "bucketing": bucketing, "key": key,
                        "murmur3_x86_32": h, "bucket": b, "arm_at_split": arms(b)})
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write")
    g.add_argument("--check")
    a = p.parse_args()
    doc = {
        "rule": "bucket = murmur3_x86_32(salt + ':' + key, seed 0) % 10000 (unsigned); "
                "treatment when bucket < traffic_split * 10000",
        "keys": {"symbol_date": "SYMBOL:YYYY-MM-DD (UTC day of the request timestamp, or of "
                                "its arrival when absent)",
                 "symbol": "SYMBOL", "client": "X-Client-Id header, 'anonymous' when absent",
                 "decision": "decision_id, lowercase hyphenated UUID"},
        "vectors": vectors(),
    }
    if a.write:
        with open(a.write, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
        return 0
    with open(a.check, encoding="utf-8") as f:
        stored = json.load(f)
    bad = 0
    for v in stored["vectors"]:
        b = bucket(v["salt"], v["key"])
        if b != v["bucket"] or arms(b) != v["arm_at_split"]:
            print(f"mismatch: {v}", file=sys.stderr)
            bad += 1
    print(f"{len(stored['vectors'])} vectors checked with mmh3: {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
