#!/usr/bin/env bash
# What the shared risk ledger costs a decision (docs/BENCHMARKS.md): a redis-server and two
# release servers side by side, one with this replica's books ([ledger] store = "memory") and
# one with Redis's (store = "redis": one Lua script per risk-checked decision, on loopback);
# alternating runs at 2,000 risk-checked decisions/s, PAIRS pairs (default 4). Limits are set
# out of reach so every order is applied. Needs `cargo build --release` first (or BIN=path).
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${PAIRS:-4}"
out="${OUT:-/tmp/tradeserve-bench-ledger}"
bin="${BIN:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
redis_port="${REDIS_PORT:-16399}"
rm -rf "$out" && mkdir -p "$out"
"${TRADESERVE_REDIS:-redis-server}" --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
  --dir "$out" >"$out/redis.log" 2>&1 &
redis_pid=$!
limits=(TRADESERVE_RISK__MAX_POSITION_SHARES=1000000000000 TRADESERVE_RISK__MAX_POSITION_NOTIONAL=1000000000000000000.0
  TRADESERVE_RISK__MAX_CONCENTRATION=1.0 TRADESERVE_RISK__PORTFOLIO_CAPITAL=100000000000000000000.0
  TRADESERVE_RISK__MAX_ORDER_NOTIONAL=1000000000000000000.0 TRADESERVE_RISK__MAX_DAILY_ORDERS=1000000000)
start() { # name port [env...]
  local name=$1 port=$2; shift 2
  env "${limits[@]}" TRADESERVE_EVENTS__AUDIT_LOG="$out/$name.jsonl" \
    TRADESERVE_CONTROL__FILE="$out/$name-control.json" "$@" \
    "$bin" serve --listen "127.0.0.1:$port" 2>"$out/$name.log" &
}
start memory 18093
memory_pid=$!
# A new shared ledger has no generation until it is initialised: every order would be refused.
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.1; done
# (A binary from before the ledger's generation has no such command and needs none.)
if "$bin" risk rebuild-shared --help >/dev/null 2>&1; then
  TRADESERVE_LEDGER__REDIS_URL="redis://127.0.0.1:$redis_port/0" "$bin" risk rebuild-shared --flat \
    --by bench --reason "benchmark ledger" --write >"$out/ledger.json"
fi
start redis 18094 TRADESERVE_LEDGER__STORE=redis TRADESERVE_LEDGER__REDIS_URL="redis://127.0.0.1:$redis_port/0"
redis_server_pid=$!
trap 'kill $memory_pid $redis_server_pid $redis_pid' EXIT
for p in 18093 18094; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p/health/ready" >/dev/null && break; sleep 0.1; done
done
. scripts/bench_run.sh
for i in $(seq 1 "$pairs"); do
  run "memory$i" 18093
  run "redis$i" 18094
done
