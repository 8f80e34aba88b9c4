#!/usr/bin/env bash
# Remote model backends against in process (docs/BENCHMARKS.md, issue 12): the same release
# binary serving every role in process, then with the three specialists on KServe's Python
# model server (serving/kserve/onnx_server.py) through the Open Inference Protocol
# (kserve_v2) and through TF Serving's REST API (tfserving, KServe's v1 protocol). Each run
# is a fresh TradeServe at RATES (default 100 500) for SECONDS each after 2 s of warm-up,
# risk_check off, request_deadline 1 s (so slowness shows as latency, not as 504s); it
# prints client p50/p95/p99, the statuses, and the model server's CPU per decision (from
# /proc/<pid>/stat). The load generator is the binary's own, on the same 2 cores.
#   BIN=target/release/tradeserve RATES="100 500" SECONDS_EACH=20 scripts/bench_remote.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-target/release/tradeserve}"
rates="${RATES:-100 500}"
secs="${SECONDS_EACH:-20}"
python="${TRADESERVE_KSERVE_PYTHON:-$HOME/.cache/tradeserve/kserve-venv/bin/python}"
out="${OUT:-/tmp/tradeserve-bench-remote}"
port="${PORT:-18087}"
ks_port="${KSERVE_PORT:-18088}"
url="http://127.0.0.1:$port"
mkdir -p "$out"

"$python" serving/kserve/onnx_server.py --models "$PWD/models" --host 127.0.0.1 \
  --http_port "$ks_port" --enable_grpc false >"$out/kserve.log" 2>&1 &
ks_pid=$!
trap 'kill $ks_pid 2>/dev/null || true; kill ${server_pid:-} 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$ks_port/v2/health/ready" >/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

serve() { # kind: in_process | kserve_v2 | tfserving
  rm -rf "$out/run" && mkdir -p "$out/run"
  local envs=(TRADESERVE_EVENTS__AUDIT_LOG="$out/run/audit.jsonl" TRADESERVE_CONTROL__FILE="$out/run/control.json"
              TRADESERVE_SERVER__REQUEST_DEADLINE=1s)
  if [ "$1" != in_process ]; then
    local section; section=$(echo "$1" | tr a-z A-Z)
    envs+=(TRADESERVE_MODELS__"$section"__URL="http://127.0.0.1:$ks_port"
           TRADESERVE_MODELS__"$section"__MODEL='{role}-{version}' TRADESERVE_MODELS__"$section"__VERSIONED=false)
    for role in BULL BEAR SIDEWAYS; do envs+=(TRADESERVE_MODELS__BACKENDS__"$role"_SPECIALIST="$1"); done
  fi
  env "${envs[@]}" "$bin" serve --listen "127.0.0.1:$port" 2>"$out/run/server.log" &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf "$url/health/ready" >/dev/null && return; sleep 0.1; done
  echo "server did not become ready" >&2; exit 1
}
stop() { kill "$server_pid"; wait "$server_pid" || true; }

for kind in in_process kserve_v2 tfserving; do
  serve "$kind"
  for rate in $rates; do
    n=$((rate * secs)); warm=$((rate * 2))
    before=$(cpu_ticks "$ks_pid")
    "$bin" loadtest --url "$url" --rate "$rate" --requests "$n" --warmup "$warm" \
      --extra '{"risk_check": false}' --timeout 5s --json-out "$out/$kind-$rate.json" >/dev/null
    after=$(cpu_ticks "$ks_pid")
    python3 - "$out/$kind-$rate.json" "$kind" "$rate" "$((after - before))" "$((n + warm))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["latency_ms"]
ticks, sent, hz = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cpu = ticks / hz / sent * 1e3
print("%-10s %4s/s  p50 %7.3f  p95 %7.3f  p99 %7.3f ms | model server CPU %.2f ms/decision | %s"
      % (sys.argv[2], sys.argv[3], c["p50"], c["p95"], c["p99"], cpu, r["statuses"]))
PY
  done
  stop
done
