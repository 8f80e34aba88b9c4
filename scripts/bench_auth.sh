#!/usr/bin/env bash
# What API keys cost a decision (docs/BENCHMARKS.md): two release servers side by side, one
# without keys and one with a trader key (salted SHA-256 check per request; QUOTA=1 also
# gives the key a quota high enough never to refuse, so the limiter runs too); alternating
# runs at 2,000 decisions/s, PAIRS pairs (default 4). Needs `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${PAIRS:-4}"
out="${OUT:-/tmp/tradeserve-bench-auth}"
bin="${CARGO_TARGET_DIR:-target}/release/tradeserve"
rm -rf "$out" && mkdir -p "$out"
quota=()
[ "${QUOTA:-0}" = 1 ] && quota=(--rate-per-minute 100000000)
"$bin" auth new-key --id bench --role trader "${quota[@]}" --json >"$out/key.json"
key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$out/key.json")
python3 - "$out/key.json" >"$out/keys.toml" <<'PY'
import json, sys
k = json.load(open(sys.argv[1]))
print("[[keys]]\nid = %s\nhash = %s\nroles = %s" % (json.dumps(k["id"]), json.dumps(k["hash"]), json.dumps(k["roles"])))
if "rate_per_minute" in k: print("rate_per_minute = %d" % k["rate_per_minute"])
PY
start() { # name port [env...]
  local name=$1 port=$2; shift 2
  env TRADESERVE_EVENTS__AUDIT_LOG="$out/$name.jsonl" TRADESERVE_CONTROL__FILE="$out/$name-control.json" "$@" \
    "$bin" serve --listen "127.0.0.1:$port" 2>"$out/$name.log" &
}
start open 18091
open_pid=$!
start keyed 18092 TRADESERVE_AUTH__KEYS_FILE="$out/keys.toml"
keyed_pid=$!
trap 'kill $open_pid $keyed_pid' EXIT
for p in 18091 18092; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p/health/ready" >/dev/null && break; sleep 0.1; done
done
. scripts/bench_run.sh
for i in $(seq 1 "$pairs"); do
  run "open$i" 18091 --extra '{"risk_check": false}'
  run "keyed$i" 18092 --extra '{"risk_check": false}' --header "Authorization: Bearer $key"
done
