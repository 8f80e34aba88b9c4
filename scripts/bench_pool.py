#!/usr/bin/env python3
"""Pool load-test reports by binary and compare: `bench_pool.py A_GLOB B_GLOB` adds up the
latency histograms of every `tradeserve loadtest --json-out` report matching each glob (the
runs of one binary) and prints the pooled client and server percentiles of A and B and their
ratio B / A. A stall that ruins one run's p99 moves a pooled p99 only by its share of the
requests, so pooled percentiles over interleaved runs are steadier than a median of each run's
(docs/BENCHMARKS.md)."""

import glob
import json
import sys


def pooled(pattern):
    files = sorted(glob.glob(pattern))
    if not files:
        sys.exit(f"no report matches {pattern}")
    hist = {"client_us": {}, "server_us": {}}
    for f in files:
        report = json.load(open(f))
        for kind, buckets in report["histograms"].items():
            for value, count in buckets:
                hist[kind][value] = hist[kind].get(value, 0) + count
    return len(files), hist


def quantile(hist, q):
    total = sum(hist.values())
    if total == 0:
        return float("nan")
    # HdrHistogram's rule: the lowest value with at least q of the counts at or below it.
    want = max(1, int(q * total + 0.5))
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= want:
            return value
    return max(hist)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    (na, a), (nb, b) = pooled(sys.argv[1]), pooled(sys.argv[2])
    print(f"A: {na} runs ({sys.argv[1]}), B: {nb} runs ({sys.argv[2]})")
    for kind, unit in (("client_us", "client"), ("server_us", "server")):
        if not a[kind] or not b[kind]:
            continue  # a bare endpoint reports no server latency
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)):
            x, y = quantile(a[kind], q), quantile(b[kind], q)
            print(f"{unit:6} {name:5}  A {x:8.0f} µs  B {y:8.0f} µs  B/A {y / x:5.2f}")


if __name__ == "__main__":
    main()
