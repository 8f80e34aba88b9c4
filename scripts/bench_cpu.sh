#!/usr/bin/env bash
# Server CPU per request (docs/BENCHMARKS.md, issue 16): for each binary in BINS (default the
# release build), ROUNDS times in turn, a fresh server on the embedded defaults answers
# REQUESTS bare `GET /health/live` and then REQUESTS decisions at RATE/s, and the server's
# utime + stime from /proc/<pid>/stat over each run, divided by the requests, is printed
# (µs per request), with the extra a decision costs over the bare route on the same server.
#   BINS="/tmp/bin/base target/release/tradeserve" ROUNDS=3 RATE=10000 REQUESTS=100000 scripts/bench_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bins="${BINS:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
rounds="${ROUNDS:-3}"
rate="${RATE:-10000}"
requests="${REQUESTS:-100000}"
out="${OUT:-/tmp/tradeserve-bench-cpu}"
port="${PORT:-18084}"
url="http://127.0.0.1:$port"
loadgen="${LOADGEN:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
tick_us=$((1000000 / $(getconf CLK_TCK)))
mkdir -p "$out"
trap '[ -n "$server_pid" ] && kill $server_pid 2>/dev/null || true' EXIT

. scripts/bench_serve.sh

# utime + stime of the server, in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }

measure() { # label, loadtest args...
  local label=$1
  shift
  local before after
  "$loadgen" loadtest --url "$url" --rate "$rate" --requests 2000 --warmup 0 "$@" >/dev/null
  before=$(ticks)
  "$loadgen" loadtest --url "$url" --rate "$rate" --requests "$requests" --warmup 0 \
    --json-out "$out/$label.json" "$@" >/dev/null
  after=$(ticks)
  echo $(((after - before) * tick_us * 1000 / requests))
}

for round in $(seq 1 "$rounds"); do
  for bin in $bins; do
    serve "$bin"
    bare=$(measure bare --path /health/live)
    decision=$(measure decision)
    stop
    python3 - "$bin" "$round" "$bare" "$decision" "$out/decision.json" <<'PY'
import json, sys
b, d = int(sys.argv[3]) / 1000, int(sys.argv[4]) / 1000
r = json.load(open(sys.argv[5])); c = r["latency_ms"]
print("%-32s round %s  bare %5.1f us  decision %5.1f us  extra %5.1f us  (decision p99 %.2f ms, %s)"
      % (sys.argv[1], sys.argv[2], b, d, d - b, c["p99"], r["statuses"]))
PY
  done
done
