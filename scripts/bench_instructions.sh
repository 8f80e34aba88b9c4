#!/usr/bin/env bash
# Instructions per decision, counted rather than timed (docs/BENCHMARKS.md): each binary
# serves under valgrind's cachegrind (instruction counts only) on the embedded defaults, once
# with LOW and once with HIGH decisions sent over the same ten seconds (so the per-second
# background work is the same in both), and (Ir(HIGH) − Ir(LOW)) / (HIGH − LOW) is what one
# decision costs the whole process: HTTP, admission, the pipeline, risk, the audit log. A count
# does not move with the VM's neighbours, so two binaries compare to the instruction.
#   OLD=/tmp/bin/old NEW=target/release/tradeserve scripts/bench_instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
old="${OLD:?path of the previous binary}"
new="${NEW:-${CARGO_TARGET_DIR:-target}/release/tradeserve}"
low="${LOW:-300}"
high="${HIGH:-1500}"
out="${OUT:-/tmp/tradeserve-bench-instructions}"
port="${PORT:-18085}"
command -v valgrind >/dev/null || { echo "needs valgrind (Debian: apt-get install valgrind)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
export TRADESERVE_SERVER__DRAIN_DELAY=0s
# Under valgrind a decision takes ~50× longer: the deadline is lifted so none is refused.
export TRADESERVE_SERVER__REQUEST_DEADLINE=10s
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT

count() { # binary, label, decisions → Ir of the whole run
  local bin=$1 label=$2 n=$3
  rm -rf "$out/run" && mkdir -p "$out/run"
  TRADESERVE_EVENTS__AUDIT_LOG="$out/run/audit.jsonl" TRADESERVE_CONTROL__FILE="$out/run/control.json" \
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out/$label.cg" \
    "$bin" serve --listen "127.0.0.1:$port" 2>"$out/$label.log" &
  pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.5; done
  "$new" loadtest --url "http://127.0.0.1:$port" --rate "$((n / 10))" --requests "$n" --warmup 0 \
    --json-out "$out/$label.json" >/dev/null
  kill "$pid"
  wait "$pid" || true
  pid=""
  awk '/^summary:/ {print $2}' "$out/$label.cg"
}

for side in old new; do
  bin=$old; [ "$side" = new ] && bin=$new
  a=$(count "$bin" "$side-low" "$low")
  b=$(count "$bin" "$side-high" "$high")
  python3 - "$side" "$a" "$b" "$low" "$high" <<'PY'
import sys
side, a, b, low, high = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print("%-4s Ir %d (%d decisions), %d (%d): %.0f instructions per decision"
      % (side, a, low, b, high, (b - a) / (high - low)))
PY
done
