# Sourced by the benchmark scripts: start the release server on $port (default $1) with its
# audit log and control state, fresh, under $OUT; stop it (by PID) when the script exits.
out="${OUT:-/tmp/tradeserve-bench}"
port="${PORT:-$1}"
mkdir -p "$out"
rm -f "$out/control.json" "$out/audit.jsonl"
bin="${CARGO_TARGET_DIR:-target}/release/tradeserve"
url="http://127.0.0.1:$port"
TRADESERVE_EVENTS__AUDIT_LOG="$out/audit.jsonl" TRADESERVE_CONTROL__FILE="$out/control.json" \
  "$bin" serve --listen "127.0.0.1:$port" 2>"$out/server.log" &
server_pid=$!
trap 'kill $server_pid' EXIT
sleep 1
