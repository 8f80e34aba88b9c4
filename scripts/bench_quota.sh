#!/usr/bin/env bash
# What a fleet-wide quota costs a request (docs/BENCHMARKS.md): one replica (release binary),
# a trader key with a quota it never reaches, decisions at RATE/s; the quota either this
# process's own limiter (control store in a file) or shared in Redis (control store in Redis:
# one GCRA step in Lua per request), in PAIRS interleaved pairs on fresh servers.
#   BIN=target/release/tradeserve PAIRS=3 scripts/bench_quota.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
pairs="${PAIRS:-3}"
rate="${RATE:-2000}"
requests="${REQUESTS:-20000}"
out="${OUT:-/tmp/tradeserve-bench-quota}"
redis_bin="${TRADESERVE_REDIS:-$(command -v redis-server)}"
rm -rf "$out" && mkdir -p "$out"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pid="" redis_pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; true' EXIT

redis_port=$(free_port)
"$redis_bin" --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >"$out/redis.log" 2>&1 &
redis_pid=$!
"$bin" auth new-key --id bench-1 --role trader --json >"$out/key.json"
python3 - "$out" <<'PY'
import json, sys
k = json.load(open(sys.argv[1] + "/key.json"))
open(sys.argv[1] + "/keys.toml", "w").write(
    '[[keys]]\nid = "%s"\nhash = "%s"\nroles = ["trader"]\nrate_per_minute = 100000000\n' % (k["id"], k["hash"]))
open(sys.argv[1] + "/key", "w").write(k["key"])
PY
key=$(cat "$out/key")

run() { # label, store
  local label=$1 store=$2 port
  port=$(free_port)
  rm -rf "$out/run" && mkdir -p "$out/run"
  TRADESERVE_AUTH__KEYS_FILE="$out/keys.toml" TRADESERVE_SERVER__DRAIN_DELAY=0s \
    TRADESERVE_EVENTS__AUDIT_LOG="$out/run/audit.jsonl" TRADESERVE_CONTROL__FILE="$out/run/control.json" \
    TRADESERVE_CONTROL__STORE="$store" TRADESERVE_CONTROL__REDIS_URL="redis://127.0.0.1:$redis_port/0" \
    TRADESERVE_CONTROL__REDIS_PREFIX="bench-$label" \
    "$bin" serve --listen "127.0.0.1:$port" 2>"$out/$label.log" &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
  "$bin" loadtest --url "http://127.0.0.1:$port" --rate "$rate" --requests "$requests" --warmup 2000 \
    --extra '{"risk_check": false}' --header "Authorization: Bearer $key" --json-out "$out/$label.json" >/dev/null
  kill "$pid"; wait "$pid" || true; pid=""
  python3 - "$out/$label.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["statuses"] == {"200": r["requests"]}, r["statuses"]
print(f'{sys.argv[2]}: client p50 {r["latency_ms"]["p50"]:.3f} p99 {r["latency_ms"]["p99"]:.3f} ms; server p50 {r["server_latency_ms"]["p50"]*1000:.0f} p99 {r["server_latency_ms"]["p99"]*1000:.0f} µs')
PY
}

for i in $(seq 1 "$pairs"); do
  run "local-$i" file
  run "shared-$i" redis
done
