#!/usr/bin/env bash
# Run TradeServe's whole test suite, installing what it needs first.
#
# Idempotent: the Python virtual environments (training checks, MLflow) and the tansu broker
# are cached under
# ~/.cache/tradeserve (override with TRADESERVE_CACHE) and rebuilt only when their pinned
# requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${TRADESERVE_CACHE:-$HOME/.cache/tradeserve}"
mkdir -p "$cache"

step() { printf '\n==> %s\n' "$*"; }

# Plain output when the log goes to a file (no ANSI colour codes).
if [ ! -t 1 ]; then
  export CARGO_TERM_COLOR=never NO_COLOR=1
fi

# --- Python environment (training checks) -------------------------------------------------
venv="$cache/train-venv"
stamp="$venv/.requirements-$(sha256sum training/requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  step "creating the Python venv in $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    # Debian's system Python needs its venv package.
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r training/requirements.txt
  touch "$stamp"
fi

step "bundled market data is reproduced by training/ (bars byte for byte, golden features within 1e-12)"
"$venv/bin/python" training/train.py --check-data

step "no import cycles between modules; no function over 65 lines or 5 parameters"
python3 scripts/module_cycles.py
python3 scripts/fn_sizes.py

# --- MLflow (registry tests against a real server) ----------------------------------------
mlflow_venv="$cache/mlflow-venv"
mlflow_stamp="$mlflow_venv/.requirements-$(sha256sum scripts/requirements-mlflow.txt | cut -c1-16)"
if [ ! -f "$mlflow_stamp" ]; then
  step "installing MLflow in $mlflow_venv (once; about a minute)"
  rm -rf "$mlflow_venv"
  python3 -m venv "$mlflow_venv"
  "$mlflow_venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-mlflow.txt
  touch "$mlflow_stamp"
fi
export TRADESERVE_MLFLOW="$mlflow_venv/bin/mlflow"

# --- KServe (a real Open Inference Protocol server for the remote-backend tests) -----------
kserve_venv="$cache/kserve-venv"
kserve_stamp="$kserve_venv/.requirements-$(sha256sum scripts/requirements-kserve.txt | cut -c1-16)"
if [ ! -f "$kserve_stamp" ]; then
  step "installing KServe's model server in $kserve_venv (once; about a minute)"
  rm -rf "$kserve_venv"
  python3 -m venv "$kserve_venv"
  "$kserve_venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-kserve.txt
  touch "$kserve_stamp"
fi
export TRADESERVE_KSERVE_PYTHON="$kserve_venv/bin/python"

# --- TorchServe (its inference and management APIs, for the remote-backend tests) ---------
if ! command -v java >/dev/null 2>&1; then
  step "installing Java 17 for TorchServe (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless
fi
torchserve_venv="$cache/torchserve-venv"
torchserve_stamp="$torchserve_venv/.requirements-$(sha256sum scripts/requirements-torchserve.txt | cut -c1-16)"
if [ ! -f "$torchserve_stamp" ]; then
  step "installing TorchServe in $torchserve_venv (once; under a minute)"
  rm -rf "$torchserve_venv"
  python3 -m venv "$torchserve_venv"
  "$torchserve_venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-torchserve.txt
  touch "$torchserve_stamp"
fi
export TRADESERVE_TORCHSERVE_VENV="$torchserve_venv"

# --- tansu (a real Kafka-protocol broker for the event tests) ------------------------------
# No Kafka broker is packaged for this machine; tansu builds from crates.io (15-20 min once).
tansu_version=0.6.0
tansu_root="$cache/tansu-$tansu_version"
if [ ! -x "$tansu_root/bin/tansu" ]; then
  step "building the tansu broker $tansu_version into $tansu_root (once; 15-20 minutes)"
  cargo install "tansu@$tansu_version" --locked --features libsql,dynostore --root "$tansu_root"
fi
export TRADESERVE_TANSU="$tansu_root/bin/tansu"

export TRADESERVE_PYTHON="$venv/bin/python"

# --- Redis (shared control state across replicas) -----------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
  step "installing redis-server (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
fi
export TRADESERVE_REDIS="$(command -v redis-server)"


# --- Rust ---------------------------------------------------------------------------------
# Tests that need a real service are #[ignore]d for a bare `cargo test`; here they run.
step "cargo test (unit, golden, parity, API, process, real-MLflow, real-broker and real-Redis tests)"
# --no-fail-fast: every test binary runs, and the summary below names each that failed.
# Tests that mount a small tmpfs (full-disk behaviour) need root, as CI runs.
if RUST_LIB_BACKTRACE=0 cargo test --workspace --locked --no-fail-fast -- --include-ignored; then
  step "all tests passed"
else
  step "some tests FAILED (see the 'test result: FAILED' lines above)"
  exit 1
fi
