#!/usr/bin/env bash
# Remote model backends against in process (docs/BENCHMARKS.md, issue 12): the same release
# binary serving every role in process, then with the three specialists on KServe's Python
# model server (serving/kserve/onnx_server.py) through the Open Inference Protocol
# (kserve_v2) and through TF Serving's REST API (tfserving, KServe's v1 protocol), then on
# TorchServe 0.12 (torchserve: packaged by `tradeserve torchserve package`, one worker per
# model, TS_BATCH_SIZE server-side batching, default 1); kserve_v2_grpc and torchserve_grpc are
# the same servers through their gRPC APIs (issue 29). KINDS picks among them. Each run
# is a fresh TradeServe at RATES (default 100 500) for SECONDS each after 2 s of warm-up,
# risk_check off, request_deadline 1 s (so slowness shows as latency, not as 504s); it
# prints client p50/p95/p99, the statuses, and the model server's CPU per decision (from
# /proc/<pid>/stat). The load generator is the binary's own, on the same 2 cores.
# BATCH_ROWS is TradeServe's own micro-batching (models.remote.batch_max_rows, default 16;
# 1 turns it off), BATCH_IN_FLIGHT calls per model at once (default 4).
#   BIN=target/release/tradeserve RATES="100 500" SECONDS_EACH=20 scripts/bench_remote.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin="${BIN:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
rates="${RATES:-100 500}"
secs="${SECONDS_EACH:-20}"
python="${TRADESERVE_KSERVE_PYTHON:-$HOME/.cache/tradeserve/kserve-venv/bin/python}"
ts_venv="${TRADESERVE_TORCHSERVE_VENV:-$HOME/.cache/tradeserve/torchserve-venv}"
kinds="${KINDS:-in_process kserve_v2 tfserving torchserve}"
ts_batch="${TS_BATCH_SIZE:-1}"
batch_rows="${BATCH_ROWS:-16}"
batch_in_flight="${BATCH_IN_FLIGHT:-4}"
out="${OUT:-/tmp/tradeserve-bench-remote}"
port="${PORT:-18087}"
ks_port="${KSERVE_PORT:-18088}"
ks_grpc_port="${KSERVE_GRPC_PORT:-18089}"
ts_port="${TS_PORT:-18090}"  # inference; management, metrics and gRPC on the next four
url="http://127.0.0.1:$port"
mkdir -p "$out"

"$python" serving/kserve/onnx_server.py --models "$PWD/models" --host 127.0.0.1 \
  --http_port "$ks_port" --grpc_port "$ks_grpc_port" >"$out/kserve.log" 2>&1 &
ks_pid=$!
trap 'kill $ks_pid 2>/dev/null || true; kill ${server_pid:-} 2>/dev/null || true; [ -n "${ts_pid:-}" ] && kill -KILL -- -"$ts_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$ks_port/v2/health/ready" >/dev/null && break; sleep 0.1; done

start_torchserve() { # own process group, so that Java and its workers stop together
  mkdir -p "$out/ts/store"
  cat >"$out/ts/config.properties" <<CFG
inference_address=http://127.0.0.1:$ts_port
management_address=http://127.0.0.1:$((ts_port + 1))
metrics_address=http://127.0.0.1:$((ts_port + 2))
grpc_inference_address=127.0.0.1
grpc_management_address=127.0.0.1
grpc_inference_port=$((ts_port + 3))
grpc_management_port=$((ts_port + 4))
model_store=$out/ts/store
default_workers_per_model=1
disable_token_authorization=true
enable_model_api=true
install_py_dep_per_model=false
vmargs=-Xmx256m -XX:+UseSerialGC -XX:-UseContainerSupport
CFG
  PATH="$ts_venv/bin:$PATH" PYTHONPATH="$repo/serving/torchserve" \
    LOG_LOCATION="$out/ts/logs" METRICS_LOCATION="$out/ts/logs" \
    setsid "$ts_venv/bin/torchserve" --start --ncs --foreground --ts-config "$out/ts/config.properties" \
    >"$out/ts/torchserve.log" 2>&1 &
  ts_pid=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$ts_port/ping" >/dev/null && break; sleep 0.1; done
  for role in bull_specialist bear_specialist sideways_specialist; do
    "$bin" torchserve package --model "models/$role/1" --export-path "$out/ts/store" \
      --archiver "$ts_venv/bin/torch-model-archiver" >/dev/null
    curl -sf -X POST "http://127.0.0.1:$((ts_port + 1))/models?url=$role.mar&initial_workers=1&synchronous=true&batch_size=$ts_batch&max_batch_delay=2" >/dev/null
  done
  sleep 1
  ts_server=$(pgrep -P "$ts_pid" -f ModelServer)
}

serve() { # kind: in_process | kserve_v2 | tfserving | torchserve | kserve_v2_grpc | torchserve_grpc
  rm -rf "$out/run" && mkdir -p "$out/run"
  local envs=(TRADESERVE_EVENTS__AUDIT_LOG="$out/run/audit.jsonl" TRADESERVE_CONTROL__FILE="$out/run/control.json"
              TRADESERVE_SERVER__REQUEST_DEADLINE=1s
              TRADESERVE_MODELS__REMOTE__BATCH_MAX_ROWS="$batch_rows"
              TRADESERVE_MODELS__REMOTE__BATCH_IN_FLIGHT="$batch_in_flight")
  case "$1" in
    kserve_v2_grpc) envs+=(TRADESERVE_MODELS__KSERVE_V2__PROTOCOL=grpc
                           TRADESERVE_MODELS__KSERVE_V2__GRPC_URL="http://127.0.0.1:$ks_grpc_port") ;;
    torchserve_grpc) envs+=(TRADESERVE_MODELS__TORCHSERVE__PROTOCOL=grpc
                            TRADESERVE_MODELS__TORCHSERVE__GRPC_URL="http://127.0.0.1:$((ts_port + 3))") ;;
  esac
  local kind=${1%_grpc}
  if [ "$kind" = torchserve ]; then
    envs+=(TRADESERVE_MODELS__TORCHSERVE__INFERENCE_URL="http://127.0.0.1:$ts_port"
           TRADESERVE_MODELS__TORCHSERVE__MANAGEMENT_URL="http://127.0.0.1:$((ts_port + 1))")
    for role in BULL BEAR SIDEWAYS; do envs+=(TRADESERVE_MODELS__BACKENDS__"$role"_SPECIALIST=torchserve); done
  elif [ "$kind" != in_process ]; then
    local section; section=$(echo "$kind" | tr a-z A-Z)
    envs+=(TRADESERVE_MODELS__"$section"__URL="http://127.0.0.1:$ks_port"
           TRADESERVE_MODELS__"$section"__MODEL='{role}-{version}' TRADESERVE_MODELS__"$section"__VERSIONED=false)
    for role in BULL BEAR SIDEWAYS; do envs+=(TRADESERVE_MODELS__BACKENDS__"$role"_SPECIALIST="$kind"); done
  fi
  env "${envs[@]}" "$bin" serve --listen "127.0.0.1:$port" 2>"$out/run/server.log" &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf "$url/health/ready" >/dev/null && return; sleep 0.1; done
  echo "server did not become ready" >&2; exit 1
}
stop() { kill "$server_pid"; wait "$server_pid" || true; }

# CPU of a process and its children that have exited (the TorchServe workers are children).
tree_ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1"); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

for kind in $kinds; do
  case "$kind" in torchserve*) [ -z "${ts_pid:-}" ] && start_torchserve ;; esac
  serve "$kind"
  for rate in $rates; do
    n=$((rate * secs)); warm=$((rate * 2))
    case "$kind" in torchserve*) model_pid=$ts_server ;; *) model_pid=$ks_pid ;; esac
    before=$(tree_ticks "$model_pid")
    "$bin" loadtest --url "$url" --rate "$rate" --requests "$n" --warmup "$warm" \
      --extra '{"risk_check": false}' --timeout 5s --json-out "$out/$kind-$rate.json" >/dev/null
    after=$(tree_ticks "$model_pid")
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
