#!/usr/bin/env bash
# Highest rate with client p99 < 10 ms (docs/BENCHMARKS.md, issue 16): for each rate in RATES,
# ROUNDS times, a fresh release server on the embedded defaults answers bare `GET /health/live`
# and then decisions, each `--rate R --requests 6R --warmup R/2` from the project's load
# generator on the same two cores; one line per run with the achieved rate and the client
# percentiles, the bare figure of the same server beside the decision one.
#   RATES="15000 20000 25000 30000" ROUNDS=2 scripts/bench_sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
rates="${RATES:-15000 20000 25000 30000}"
rounds="${ROUNDS:-2}"
out="${OUT:-/tmp/tradeserve-bench-sweep}"
port="${PORT:-18085}"
url="http://127.0.0.1:$port"
mkdir -p "$out"
trap '[ -n "$server_pid" ] && kill $server_pid 2>/dev/null || true' EXIT

. scripts/bench_serve.sh

run() { # label, rate, loadtest args...
  local label=$1 rate=$2
  shift 2
  "$bin" loadtest --url "$url" --rate "$rate" --requests $((rate * 6)) --warmup $((rate / 2)) \
    --json-out "$out/$label.json" "$@" >/dev/null
  python3 - "$out/$label.json" "$label" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["latency_ms"]
print("%-9s %6s/s achieved %8.0f/s  client p50 %7.3f  p99 %8.3f  p99.9 %8.3f ms  %s"
      % (sys.argv[2], sys.argv[3], r["achieved_rate"], c["p50"], c["p99"], c["p999"], r["statuses"]))
PY
}

for round in $(seq 1 "$rounds"); do
  for rate in $rates; do
    serve "$bin"
    run bare "$rate" --path /health/live
    run decision "$rate"
    stop
  done
done
