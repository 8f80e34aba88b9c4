#!/usr/bin/env bash
# REST against gRPC on the same binary (docs/BENCHMARKS.md, issue 29): ROUNDS times, a fresh
# server on the embedded defaults with both listeners answers REQUESTS decisions at RATE/s over
# REST (CONNECTIONS keep-alive HTTP/1.1 connections) and over gRPC (as many calls in flight,
# multiplexed over CHANNELS HTTP/2 connections), in alternating order; the server's utime +
# stime from /proc/<pid>/stat over each run, divided by the decisions, is its CPU per decision.
# Reports go to $OUT/{rest,grpc}-ROUND.json; the pooled percentiles and ratio are printed last.
#   ROUNDS=5 RATE=2000 REQUESTS=20000 scripts/bench_grpc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
rounds="${ROUNDS:-5}"
rate="${RATE:-2000}"
requests="${REQUESTS:-20000}"
connections="${CONNECTIONS:-64}"
channels="${CHANNELS:-1}"
out="${OUT:-/tmp/tradeserve-bench-grpc}"
port="${PORT:-18086}"
grpc_port="${GRPC_PORT:-18087}"
tick_us=$((1000000 / $(getconf CLK_TCK)))
mkdir -p "$out"
rm -f "$out"/rest-*.json "$out"/grpc-*.json
trap '[ -n "$server_pid" ] && kill $server_pid 2>/dev/null || true' EXIT
export TRADESERVE_SERVER__GRPC_LISTEN="127.0.0.1:$grpc_port"

. scripts/bench_serve.sh

ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }

measure() { # label, url, loadtest args...
  local label=$1 url=$2
  shift 2
  local before after
  "$bin" loadtest --url "$url" --rate "$rate" --requests 2000 --connections "$connections" "$@" >/dev/null
  before=$(ticks)
  "$bin" loadtest --url "$url" --rate "$rate" --requests "$requests" --connections "$connections" \
    --json-out "$out/$label.json" "$@" >/dev/null
  after=$(ticks)
  local us=$(((after - before) * tick_us * 1000 / requests))
  python3 - "$label" "$us" "$out/$label.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[3])); c, s = r["latency_ms"], r["server_latency_ms"]
print("%-10s cpu %5.1f us/decision  client p50 %.3f p99 %.3f ms  server p99 %.3f ms  %s"
      % (sys.argv[1], int(sys.argv[2]) / 1000, c["p50"], c["p99"], s["p99"], r["statuses"]))
PY
}

rest() { measure "rest-$1" "http://127.0.0.1:$port"; }
grpc() { measure "grpc-$1" "http://127.0.0.1:$grpc_port" --grpc --grpc-channels "$channels"; }

for round in $(seq 1 "$rounds"); do
  serve "$bin"
  if [ $((round % 2)) -eq 1 ]; then rest "$round"; grpc "$round"; else grpc "$round"; rest "$round"; fi
  stop
done
python3 scripts/bench_pool.py "$out/rest-*.json" "$out/grpc-*.json"
