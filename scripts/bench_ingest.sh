#!/usr/bin/env bash
# Decision latency while the live feed ingests (docs/BENCHMARKS.md, issue 13): a tansu broker,
# the release binary on features.source = "live" reading the topic, and the project's load
# generator at RATE decisions/s (point-in-time requests, so that bar age plays no part) —
# first while `tradeserve market publish` streams the bundled bars at BARS_PER_S, then,
# back to back, with the feed idle. Prints both reports' client p50/p95/p99 and their ratios.
#   BIN=target/release/tradeserve RATE=1000 BARS_PER_S=5000 SECONDS_EACH=15 scripts/bench_ingest.sh
# SPLIT=1 stands in for a deployment where the broker and the publisher run on other machines:
# they are pinned to the last CPU, TradeServe and the load generator to the others (both runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
rate="${RATE:-1000}"
bars_per_s="${BARS_PER_S:-5000}"
secs="${SECONDS_EACH:-15}"
tansu="${TRADESERVE_TANSU:-$HOME/.cache/tradeserve/tansu-0.6.0/bin/tansu}"
out="${OUT:-/tmp/tradeserve-bench-ingest}"
kport="${KAFKA_PORT:-19192}"
port="${PORT:-18188}"
rm -rf "$out" && mkdir -p "$out"
feed_cpus=() serve_cpus=()
if [ "${SPLIT:-0}" = 1 ]; then
  last=$(($(nproc) - 1))
  [ "$last" -ge 1 ] || { echo "SPLIT=1 needs two CPUs" >&2; exit 2; }
  feed_cpus=(taskset -c "$last") serve_cpus=(taskset -c "0-$((last - 1))")
fi
(cd "$out" && exec "${feed_cpus[@]}" "$tansu" broker --listener-url "tcp://127.0.0.1:$kport" \
  --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine sqlite://tansu.db >tansu.log 2>&1) &
tansu_pid=$!
trap 'kill ${server_pid:-} ${pub_pid:-} 2>/dev/null || true; kill $tansu_pid 2>/dev/null || true' EXIT
sleep 1
# A first bar creates the topic; the service then starts caught up.
"${feed_cpus[@]}" "$bin" market publish --brokers "127.0.0.1:$kport" --symbols SPY --speed 0 >/dev/null
TRADESERVE_FEATURES__SOURCE=live TRADESERVE_FEATURES__LIVE__KAFKA__BROKERS="127.0.0.1:$kport" \
  TRADESERVE_FEATURES__LIVE__RETAIN_BARS=100000 \
  TRADESERVE_EVENTS__AUDIT_LOG="$out/audit.jsonl" TRADESERVE_CONTROL__FILE="$out/control.json" \
  TRADESERVE_SERVER__REQUEST_DEADLINE=1s "${serve_cpus[@]}" "$bin" serve --listen "127.0.0.1:$port" 2>"$out/server.log" &
server_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
# Point-in-time requests on a SPY bar every run can read (held since the first publish).
extra='{"risk_check": false, "timestamp": "2025-10-20T15:00:00Z"}'
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { "${serve_cpus[@]}" "$bin" loadtest --url "http://127.0.0.1:$port" --rate "$rate" --requests $((rate * secs)) \
  --warmup $((rate * 2)) --symbols SPY --extra "$extra" --timeout 5s --json-out "$out/$1.json" >/dev/null; }
"${feed_cpus[@]}" "$bin" market publish --brokers "127.0.0.1:$kport" --rate "$bars_per_s" >"$out/publish.json" &
pub_pid=$!
sleep 1
t0=$(ticks $server_pid); b0=$(ticks $tansu_pid); p0=$(ticks $pub_pid)
run ingesting
t1=$(ticks $server_pid); b1=$(ticks $tansu_pid); p1=$(ticks $pub_pid)
kill $pub_pid 2>/dev/null || true; wait $pub_pid 2>/dev/null || true
ingested=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^tradeserve_bars_total\{result="applied"\}/ {print $2}')
run idle
t2=$(ticks $server_pid)
python3 - "$out" "$ingested" "$((t1 - t0))" "$((t2 - t1))" "$((b1 - b0))" "$((p1 - p0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
out = sys.argv[1]
hz = int(sys.argv[7])
busy, idle, broker, pub = (int(x) / hz for x in sys.argv[3:7])
print(f"CPU seconds during the ingesting run: TradeServe {busy:.2f}, broker {broker:.2f}, publisher {pub:.2f}; "
      f"TradeServe during the idle run {idle:.2f}")
a = json.load(open(f"{out}/ingesting.json"))["latency_ms"]
b = json.load(open(f"{out}/idle.json"))["latency_ms"]
for k in ("p50", "p95", "p99"):
    print(f"{k}: ingesting {a[k]:.3f} ms, idle {b[k]:.3f} ms, ratio {a[k] / b[k]:.2f}")
print(f"bars applied by the end of the ingesting run: {sys.argv[2]}")
PY
