#!/usr/bin/env bash
# Cost of acknowledging only after the event is written (docs/BENCHMARKS.md, issue 10):
# alternating runs of two release binaries, OLD (events queued to a writer thread) and NEW
# (events appended with write(2) before the answer), each a fresh server on the embedded
# defaults, 20,000 decisions at 2,000/s after 2,000 of warm-up, PAIRS pairs (default 5), plus
# the bare GET /health/live of each as a reference. The load generator is NEW's.
#   OLD=/tmp/bin/old NEW=target/release/tradeserve PAIRS=5 scripts/bench_ack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
old="${OLD:?path of the previous binary}"
new="${NEW:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
pairs="${PAIRS:-5}"
out="${OUT:-/tmp/tradeserve-bench-ack}"
port="${PORT:-18083}"
url="http://127.0.0.1:$port"
mkdir -p "$out"

. scripts/bench_serve.sh
trap 'kill $server_pid 2>/dev/null || true' EXIT

run() { # label, extra loadtest args
  local label=$1; shift
  "$new" loadtest --url "$url" --rate 2000 --requests 20000 --warmup 2000 --json-out "$out/$label.json" "$@" >/dev/null
  python3 - "$out/$label.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["latency_ms"]; s = r["server_latency_ms"]
sp = "server p50 %.0f p99 %.0f us" % (s["p50"] * 1e3, s["p99"] * 1e3) if s["count"] else ""
print("%-10s client p50 %.3f p99 %.3f p99.9 %.3f ms | %s | %s"
      % (sys.argv[2], c["p50"], c["p99"], c["p999"], sp, r["statuses"]))
PY
}

for i in $(seq 1 "$pairs"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    serve "$bin"
    run "$side-bare$i" --path /health/live
    run "$side$i"
    stop
  done
done
