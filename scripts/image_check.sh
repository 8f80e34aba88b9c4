#!/usr/bin/env bash
# The container image, built and run without a Docker daemon (Debian's podman and buildah):
#
# 1. A base image `localhost/debian:bookworm-slim`, when no registry image can be pulled: a
#    minimal Debian made with debootstrap from Debian's packages (cached as a tarball under
#    ~/.cache/tradeserve, imported once into podman's storage).
# 2. The Dockerfile's runtime stage, exactly, with the binary the test command built copied in
#    instead of the build stage's (the build stage's `FROM rust:…` cannot be pulled here):
#    `podman build --isolation chroot` (its `RUN apt-get …` fetches curl and CA certificates).
# 3. The image's entrypoint run on the image's own filesystem as its non-root user
#    (`podman run` cannot set rlimits in this sandbox; `chroot --userspec` into the mounted
#    image can): it starts, its health check command answers, it decides, it writes its audit
#    log to the volume path as uid 10001, and it drains on SIGTERM.
#
# Run by scripts/test.sh (as root, as CI runs); alone: scripts/image_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TRADESERVE_CACHE:-$HOME/.cache/tradeserve}"
bin="${BIN:-${CARGO_TARGET_DIR:-target}/debug/tradeserve}"
base=localhost/debian:bookworm-slim
image=localhost/tradeserve:image-check
build_opts=(--pull=never --isolation chroot --cgroup-manager cgroupfs)
mkdir -p "$cache"

if [ "$(id -u)" -ne 0 ]; then
  echo "image check: needs root (debootstrap, podman mount, chroot); CI runs as root" >&2
  exit 1
fi
[ -x "$bin" ] || { echo "image check: $bin not built (cargo build --bin tradeserve)" >&2; exit 1; }

work=$(mktemp -d)
pid= cid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  wait 2>/dev/null || true
  if [ -n "$cid" ]; then
    podman umount "$cid" >/dev/null 2>&1 || true
    podman rm -f "$cid" >/dev/null 2>&1 || true
  fi
  podman rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. The base image ----------------------------------------------------------------------
if ! podman image exists "$base"; then
  rootfs="$cache/debian-bookworm-minbase.tar"
  if [ ! -s "$rootfs" ]; then
    echo "image check: making a minimal Debian bookworm with debootstrap (once; about a minute)"
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    tar -C "$work/rootfs" -c . >"$rootfs.partial"
    mv "$rootfs.partial" "$rootfs"
    rm -rf "$work/rootfs"
  fi
  podman import "$rootfs" "$base" >/dev/null
fi

# --- 2. The runtime stage, with the test command's binary -----------------------------------
ctx="$work/context"
mkdir -p "$ctx/config"
sed -n '/^FROM debian:bookworm-slim/,$p' Dockerfile \
  | sed 's|^COPY --from=build /src/target/release/tradeserve /usr/local/bin/tradeserve$|COPY tradeserve /usr/local/bin/tradeserve|' \
  >"$ctx/Containerfile"
grep -q '^COPY tradeserve /usr/local/bin/tradeserve$' "$ctx/Containerfile" \
  || { echo "image check: the Dockerfile's runtime stage no longer copies the binary as expected" >&2; exit 1; }
strip -o "$ctx/tradeserve" "$bin"
cp -r models data "$ctx/"
cp config/tradeserve.example.toml "$ctx/config/"
echo "image check: podman build (the Dockerfile's runtime stage) -> $image"
podman build "${build_opts[@]}" -t "$image" -f "$ctx/Containerfile" "$ctx" >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log" >&2; exit 1; }

# What the image says about itself.
config=$(podman image inspect --format '{{json .Config}}' "$image")
python3 - "$config" <<'PY'
import json, sys
c = json.loads(sys.argv[1])
want = {"User": "10001:10001", "WorkingDir": "/opt/tradeserve", "Entrypoint": ["tradeserve"],
        "Cmd": ["serve", "--listen", "0.0.0.0:8080"], "StopSignal": "SIGTERM"}
for k, v in want.items():
    assert c.get(k) == v, f"image config {k}: {c.get(k)!r}, expected {v!r}"
assert "/opt/tradeserve/var" in (c.get("Volumes") or {}), c.get("Volumes")
print("image check: user 10001, workdir /opt/tradeserve, entrypoint tradeserve, volume /opt/tradeserve/var")
PY

# --- 3. Run its entrypoint on its own filesystem as its user --------------------------------
cid=$(podman create "$image")
root=$(podman mount "$cid")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The image's command listens on 0.0.0.0:8080; here (the host's network) loopback, a free port.
env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/opt/tradeserve TRADESERVE_SERVER__DRAIN_DELAY=0s \
  "$(command -v chroot)" --userspec=10001:10001 "$root" /bin/sh -c "cd /opt/tradeserve && exec tradeserve serve --listen 127.0.0.1:$port" \
  2>"$work/server.log" &
pid=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "image check: the image's server exited" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[ "$uid" = 10001 ] || { echo "image check: the server runs as uid $uid, not 10001" >&2; exit 1; }
# The image's own health check command, from inside the image.
chroot --userspec=10001:10001 "$root" curl -fsS -o /dev/null "http://127.0.0.1:$port/health/live"
decision=$(curl -sf "http://127.0.0.1:$port/api/v1/predict" -H 'content-type: application/json' \
  -d '{"symbol":"AAPL","timestamp":"2025-10-14T15:00:00Z"}')
id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["decision_id"])' "$decision")
kill -TERM "$pid"
wait "$pid" || { tail -20 "$work/server.log" >&2; echo "image check: no clean exit on SIGTERM" >&2; exit 1; }
pid=
log="$root/opt/tradeserve/var/audit/decisions.jsonl"
grep -q "\"decision_id\":\"$id\"" "$log" \
  || { echo "image check: decision $id not in the audit log on the volume ($log)" >&2; exit 1; }
owner=$(stat -c %u "$log")
[ "$owner" = 10001 ] || { echo "image check: the audit log is owned by uid $owner" >&2; exit 1; }
echo "image check: started as uid 10001, health check answered, decided $id, audit log on the volume (/opt/tradeserve/var/audit), drained on SIGTERM"
