# Sourced by the A/B benchmark scripts: `run NAME PORT [loadtest args...]` runs one
# 20,000-decision load test at 2,000/s (2,000 warm-up) against 127.0.0.1:PORT with the release
# binary ($bin; the load generator $LOADGEN if set, so A and B share one), keeps its report in $out/NAME.json and prints its client and server percentiles.
run() {
  local name=$1 port=$2
  shift 2
  "${LOADGEN:-$bin}" loadtest --url "http://127.0.0.1:$port" --rate 2000 --requests 20000 --warmup 2000 \
    --json-out "$out/$name.json" "$@" >/dev/null
  python3 - "$out/$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["latency_ms"]; s = r["server_latency_ms"]
print("%-8s client p50 %.3f p99 %.3f ms | server p50 %.0f p99 %.0f us | %s"
      % (sys.argv[2], c["p50"], c["p99"], s["p50"] * 1e3, s["p99"] * 1e3, r["statuses"]))
PY
}
