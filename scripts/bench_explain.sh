#!/usr/bin/env bash
# Explanation cost (docs/BENCHMARKS.md): explain: true at 100/s, and whether plain requests at
# 2,000/s are slowed by a concurrent 100/s of explanations. Needs `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench_server.sh 18082
show() {
  python3 - "$out/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["latency_ms"]; s = r["server_latency_ms"]
print("%-16s client p50 %.3f p95 %.3f p99 %.3f ms | server p50 %.3f p95 %.3f p99 %.3f ms | %s"
      % (sys.argv[2], c["p50"], c["p95"], c["p99"], s["p50"], s["p95"], s["p99"], r["statuses"]))
PY
}
load() { "$bin" loadtest --url "$url" --json-out "$out/$1.json" "${@:2}" >/dev/null; show "$1"; }
load explain-alone --rate 100 --requests 3000 --warmup 100 --extra '{"explain": true, "risk_check": false}'
load plain-alone --rate 2000 --requests 30000 --warmup 2000
"$bin" loadtest --url "$url" --rate 100 --requests 1800 --connections 8 --threads 1 \
  --extra '{"explain": true, "risk_check": false}' --json-out "$out/explain-mixed.json" >/dev/null &
mixed=$!
load plain-mixed --rate 2000 --requests 30000 --warmup 2000
wait $mixed
show explain-mixed
load plain-after --rate 2000 --requests 30000 --warmup 2000
