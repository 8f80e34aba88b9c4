#!/usr/bin/env bash
# Run TradeServe's whole test suite, installing what it needs first.
#
# Idempotent: the Python virtual environments (training checks, MLflow, KServe, TorchServe) and
# the tansu broker are cached under ~/.cache/tradeserve (override with TRADESERVE_CACHE) and
# rebuilt only when their pinned requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${TRADESERVE_CACHE:-$HOME/.cache/tradeserve}"
mkdir -p "$cache"

step() { printf '\n==> %s\n' "$*"; }

# Plain output when the log goes to a file (no ANSI colour codes).
if [ ! -t 1 ]; then
  export CARGO_TERM_COLOR=never NO_COLOR=1
fi

# --- The machine ---------------------------------------------------------------------------
# Named first, so that a failure says which CPU it ran on (SIMD kernels round differently, and
# machines of one kind have been AMD EPYC and Intel Xeon, several times apart in speed).
step "machine: $(uname -m), $(nproc) CPUs"
if [ -r /proc/cpuinfo ]; then
  grep -m1 -E '^(model name|Model)' /proc/cpuinfo | sed 's/^[^:]*: */CPU: /' || true
  simd=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo | tr ' ' '\n' \
    | grep -E '^(sse4_2|avx|avx2|fma|f16c|avx512[a-z0-9_]*|amx[a-z0-9_]*|asimd|sve)$' | tr '\n' ' ' || true)
  printf 'SIMD: %s\n' "${simd:-none listed}"
fi

# --- Disk space -----------------------------------------------------------------------------
# A cold run writes about 7 GB under the target directory (debug test binaries, clippy's
# metadata) and up to 5 GB of caches; a full disk shows up much later as a linker "Bus error"
# or "No space left on device". Say so first. (A long-lived checkout's target/ only grows:
# `cargo clean` or removing target/debug/incremental gives it back.)
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
for dir in "$target_dir" "$cache"; do
  free_gb=$(df -Pk "$dir" | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
  if [ "$free_gb" -lt 12 ]; then
    printf 'WARNING: %s GB free under %s; a cold run needs about 12 GB. The build may fail with "No space left on device".\n' \
      "$free_gb" "$dir" >&2
  fi
done

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

step "no import cycles between modules; no function over 65 lines or 5 parameters; each error cause shown once"
python3 scripts/module_cycles.py
python3 scripts/fn_sizes.py
python3 scripts/error_style.py

# --- The manual: every link resolves, and the book builds (mdBook, from crates.io once) -------
step "every link in the README and the book resolves"
python3 scripts/doc_links.py
mdbook_version=0.5.4
mdbook_root="$cache/mdbook-$mdbook_version"
if [ ! -x "$mdbook_root/bin/mdbook" ]; then
  step "building mdBook $mdbook_version into $mdbook_root (once; a few minutes)"
  cargo install "mdbook@$mdbook_version" --locked --root "$mdbook_root"
fi
step "the book builds (mdbook build: every chapter in docs/SUMMARY.md exists; into $target_dir/book)"
"$mdbook_root/bin/mdbook" build --dest-dir "$target_dir/book"

# A venv at $1 holding the pinned requirements $2 ($3 says what), rebuilt when they change.
pinned_venv() {
  local venv=$1 requirements=$2 what=$3
  local stamp
  stamp="$venv/.requirements-$(sha256sum "$requirements" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    step "installing $what in $venv (once; about a minute)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    touch "$stamp"
  fi
}

# --- MLflow (registry tests against a real server) ----------------------------------------
pinned_venv "$cache/mlflow-venv" scripts/requirements-mlflow.txt MLflow
export TRADESERVE_MLFLOW="$cache/mlflow-venv/bin/mlflow"

# --- KServe (a real Open Inference Protocol server for the remote-backend tests) -----------
pinned_venv "$cache/kserve-venv" scripts/requirements-kserve.txt "KServe's model server"
export TRADESERVE_KSERVE_PYTHON="$cache/kserve-venv/bin/python"

# --- TensorFlow (CPU) for the TF Serving SavedModel export and its test ---------------------
pinned_venv "$cache/tfexport-venv" scripts/requirements-tfexport.txt "TensorFlow for the SavedModel export"
export TRADESERVE_TFEXPORT_PYTHON="$cache/tfexport-venv/bin/python"

# --- TorchServe (its inference and management APIs, for the remote-backend tests) ---------
if ! command -v java >/dev/null 2>&1; then
  step "installing Java 17 for TorchServe (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless
fi
pinned_venv "$cache/torchserve-venv" scripts/requirements-torchserve.txt TorchServe
export TRADESERVE_TORCHSERVE_VENV="$cache/torchserve-venv"

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

# --- HAProxy (a real load balancer in front of a fleet of replicas) ------------------------
if [ ! -x /usr/sbin/haproxy ] && ! command -v haproxy >/dev/null 2>&1; then
  step "installing haproxy (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy
fi
export TRADESERVE_HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"

# --- podman, buildah, debootstrap (the container image, built and run without a daemon) -----
if ! command -v podman >/dev/null 2>&1 || ! command -v buildah >/dev/null 2>&1 \
  || [ ! -x /usr/sbin/debootstrap ]; then
  step "installing podman, buildah and debootstrap (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap
fi

# --- Prometheus and promtool (alert rules, the Grafana dashboard's queries); Chromium -------
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  step "installing Prometheus and promtool (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus
fi
export TRADESERVE_PROMETHEUS="$(command -v prometheus)"
if ! command -v chromium >/dev/null 2>&1; then
  step "installing Chromium for the dashboard's browser test (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
export TRADESERVE_CHROMIUM="$(command -v chromium)"

step "alert rules: promtool check rules, and each alert fires (and stays quiet) on synthetic series"
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts.test.yml)

# --- schemathesis (API conformance against openapi.json, after the Rust tests) -------------
pinned_venv "$cache/schemathesis-venv" scripts/requirements-schemathesis.txt schemathesis

# --- hadolint, kubernetes-validate, Locust (the deploy files, after the Rust tests) ----------
pinned_venv "$cache/deploy-venv" scripts/requirements-deploy.txt "hadolint, kubernetes-validate and Locust"

# --- Rust ---------------------------------------------------------------------------------
# Tests that need a real service are #[ignore]d for a bare `cargo test`; here they run.
step "cargo test (unit, golden, parity, API, process, real-MLflow, real-broker and real-Redis tests)"
# --no-fail-fast: every test binary runs, and the summary below names each that failed.
# Tests that mount a small tmpfs (full-disk behaviour) need root, as CI runs.
if RUST_LIB_BACKTRACE=0 cargo test --workspace --locked --no-fail-fast -- --include-ignored; then
  step "all Rust tests passed"
else
  step "some tests FAILED (see the 'test result: FAILED' lines above)"
  exit 1
fi

# tract picks its matrix kernels by CPU, and their rounding differs; the engine tests must hold
# on CPUs without AVX-512 (or without AVX) too. TRACT_CPU_ISA has tract pick those kernels here.
if [ "$(uname -m)" = x86_64 ]; then
  for isa in -avx512f,-avx512vnni,-avx512fp16 -avx512f,-avx512vnni,-avx512fp16,-fma,-avx2,-avx,-f16c; do
    step "engine tests with tract's kernels for another CPU (TRACT_CPU_ISA=$isa)"
    TRACT_CPU_ISA=$isa cargo test -p tradeserve-models --locked --test dense --test engine_choice --test golden
  done
fi

step "schemathesis on every operation of openapi.json, API keys on (no 5xx, nothing contradicting the document)"
SCHEMATHESIS="$cache/schemathesis-venv/bin/schemathesis" scripts/schemathesis.sh

step "deploy files: Dockerfile linted, Kubernetes manifests validated and consistent, Locust run headless"
DEPLOY_VENV="$cache/deploy-venv" scripts/deploy_check.sh

step "the image: the Dockerfile's runtime stage built with podman, its entrypoint run as uid 10001 (decides, audit log on the volume, drains)"
TRADESERVE_CACHE="$cache" scripts/image_check.sh
step "all tests passed"
