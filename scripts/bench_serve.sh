# Sourced by the benchmark scripts that start a fresh server per run: `serve BIN` starts BIN on
# the embedded defaults at $port with its audit log and control state under $out/run (fresh),
# waits until it is ready and leaves its PID in $server_pid; `stop` stops it (by PID) and waits.
# The caller sets $out and $port, and its EXIT trap kills $server_pid if set. The servers skip
# the shutdown drain delay, so the next run can bind the port at once.
export TRADESERVE_SERVER__DRAIN_DELAY=0s
server_pid=""

serve() {
  rm -rf "$out/run" && mkdir -p "$out/run"
  TRADESERVE_EVENTS__AUDIT_LOG="$out/run/audit.jsonl" TRADESERVE_CONTROL__FILE="$out/run/control.json" \
    "$1" serve --listen "127.0.0.1:$port" 2>"$out/run/server.log" &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && return; sleep 0.05; done
  echo "server did not become ready" >&2
  exit 1
}

stop() { kill "$server_pid"; wait "$server_pid" || true; server_pid=""; }
