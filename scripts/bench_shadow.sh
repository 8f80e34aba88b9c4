#!/usr/bin/env bash
# Shadow overhead (docs/BENCHMARKS.md): control's latency at 2,000 decisions/s, alternating
# runs without and with a shadow rollout of an all-v2 candidate (every decision shadowed),
# PAIRS pairs (default 5) on one warm release server. Needs `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${PAIRS:-5}"
. scripts/bench_server.sh 18081
run() {
  "$bin" loadtest --url "$url" --rate 2000 --requests 20000 --warmup 2000 --json-out "$out/$1.json" >/dev/null
  python3 - "$out/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["latency_ms"]; s = r["server_latency_ms"]
print("%-8s client p50 %.3f p99 %.3f p99.9 %.3f ms | server p50 %.0f p99 %.0f us | %s"
      % (sys.argv[2], c["p50"], c["p99"], c["p999"], s["p50"] * 1e3, s["p99"] * 1e3, r["statuses"]))
PY
}
candidate='{"bull_specialist":"2","bear_specialist":"2","sideways_specialist":"2","meta_controller":"2","regime_detector":"2"}'
for i in $(seq 1 "$pairs"); do
  run "base$i"
  curl -sf -XPOST "$url/api/v1/rollouts" -H 'X-Actor: bench' \
    -d '{"rollout_id":"ro-'"$i"'","candidate":'"$candidate"',"auto_promote":false,"gates":{"min_decisions":1000000000}}' >/dev/null
  run "shadow$i"
  curl -sf -XPOST "$url/api/v1/rollouts/ro-$i/rollback" >/dev/null
done
curl -s "$url/metrics" | grep '^tradeserve_shadow_runs_total'
