#!/usr/bin/env bash
# The deploy files, checked as far as this machine can (no Docker daemon, no cluster): the
# Dockerfile linted (hadolint), every Kubernetes manifest validated against the API schemas
# (kubernetes-validate --strict, offline), the manifests consistent with the service's settings
# (scripts/deploy_check.py), the Kubernetes config accepted by `tradeserve check-config`, and the
# Locust file run headless for a few seconds against the real binary. Run by scripts/test.sh;
# alone: DEPLOY_VENV=~/.cache/tradeserve/deploy-venv scripts/deploy_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${DEPLOY_VENV:?set DEPLOY_VENV to the venv of scripts/requirements-deploy.txt}"
bin="${BIN:-${CARGO_TARGET_DIR:-target}/debug/tradeserve}"
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"' EXIT

echo "hadolint Dockerfile"
"$venv/bin/hadolint" Dockerfile

echo "kubernetes-validate --strict deploy/k8s"
"$venv/bin/kubernetes-validate" --strict --quiet deploy/k8s/statefulset.yaml deploy/k8s/service.yaml \
  deploy/k8s/pdb.yaml deploy/k8s/hpa.yaml deploy/k8s/redis.yaml deploy/k8s/examples/secret.yaml

"$venv/bin/python" scripts/deploy_check.py

echo "tradeserve check-config deploy/k8s/tradeserve.toml (with stand-in secrets)"
"$bin" auth new-key --id deploy-check --role viewer --json >"$out/key.json"
python3 - "$out" <<'PY'
import json, secrets, sys
k = json.load(open(sys.argv[1] + "/key.json"))
open(sys.argv[1] + "/keys.toml", "w").write(
    '[[keys]]\nid = "%s"\nhash = "%s"\nroles = ["viewer"]\n' % (k["id"], k["hash"]))
open(sys.argv[1] + "/chain.key", "w").write(secrets.token_hex(32))
PY
TRADESERVE_AUTH__KEYS_FILE="$out/keys.toml" TRADESERVE_EVENTS__AUDIT_CHAIN_KEY_FILE="$out/chain.key" \
  "$bin" check-config --config deploy/k8s/tradeserve.toml >/dev/null

echo "locust, headless, 5 s against the real binary"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TRADESERVE_EVENTS__AUDIT_LOG="$out/audit.jsonl" TRADESERVE_CONTROL__FILE="$out/control.json" \
  TRADESERVE_SERVER__DRAIN_DELAY=0s "$bin" serve --listen "127.0.0.1:$port" 2>"$out/server.log" &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
(cd "$out" && "$venv/bin/locust" -f "$OLDPWD/deploy/locust/locustfile.py" --host "http://127.0.0.1:$port" \
  --headless --users 20 --spawn-rate 20 --run-time 5s --csv locust --only-summary \
  --exit-code-on-error 1 >locust.log 2>&1) || { cat "$out/locust.log"; exit 1; }
"$venv/bin/python" - "$out/locust_stats.csv" <<'PY'
import csv, sys
rows = {r["Name"]: r for r in csv.DictReader(open(sys.argv[1]))}
r = rows["/api/v1/predict"]
n, failed = int(r["Request Count"]), int(r["Failure Count"])
print(f"locust: {n} decisions, {failed} failed, p50 {r['50%']} ms, p99 {r['99%']} ms")
if n < 500 or failed:
    sys.exit(f"locust run too small or failing: {n} requests, {failed} failures")
PY
decided=$(grep -c '"event_type":"trading_decision"' "$out/audit.jsonl" || true)
echo "audit log: $decided decisions recorded"
