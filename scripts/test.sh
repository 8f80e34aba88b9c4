#!/usr/bin/env bash
# Run TradeServe's whole test suite, installing what it needs first.
#
# Idempotent: the Python virtual environment is cached under ~/.cache/tradeserve (override
# with TRADESERVE_CACHE) and rebuilt only when training/requirements.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${TRADESERVE_CACHE:-$HOME/.cache/tradeserve}"
mkdir -p "$cache"

step() { printf '\n==> %s\n' "$*"; }

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

step "bundled market data is reproduced by training/ byte for byte"
"$venv/bin/python" training/train.py --check-data

# --- Rust ---------------------------------------------------------------------------------
step "cargo test (unit, golden, parity, API and process tests)"
RUST_LIB_BACKTRACE=0 cargo test --workspace --locked

step "all tests passed"
