#!/usr/bin/env python3
"""Consistency of the deploy files with the service's own settings (scripts/deploy_check.sh).

The schema validator checks each manifest's shape; this checks what only the pair knows: the
StatefulSet's grace period outlasts the drain, the readiness probe sees a drain in time, the
ports and config path agree (the operator lane's too, with the liveness and startup probes on
it), the Secret's keys exist in the example, and the Dockerfile runs as the user the pod
expects. Exits 1 with every problem listed.
"""
import sys
import tomllib

import yaml


def parse_duration(s: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for u in ("ms", "s", "m", "h"):
        if s.endswith(u) and s[: -len(u)].replace(".", "").isdigit():
            return float(s[: -len(u)]) * units[u]
    raise ValueError(f"duration {s!r}")


def main() -> int:
    problems = []
    config = tomllib.load(open("deploy/k8s/tradeserve.toml", "rb"))
    sts = yaml.safe_load(open("deploy/k8s/statefulset.yaml"))
    secret = yaml.safe_load(open("deploy/k8s/examples/secret.yaml"))
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]

    drain = parse_duration(config["server"]["drain_delay"])
    grace = parse_duration(config["server"]["shutdown_grace"])
    if pod["terminationGracePeriodSeconds"] <= drain + grace + 5:
        problems.append(
            f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} must exceed "
            f"drain_delay + shutdown_grace + 5 s ({drain + grace + 5:.0f})"
        )
    r = c["readinessProbe"]
    if r["periodSeconds"] * r["failureThreshold"] * 2 > drain:
        problems.append(
            f"readiness ({r['periodSeconds']} s × {r['failureThreshold']}) must notice a drain "
            f"twice within drain_delay ({drain} s)"
        )
    port = int(config["server"]["listen"].rsplit(":", 1)[1])
    if c["ports"][0]["containerPort"] != port:
        problems.append(f"containerPort {c['ports'][0]['containerPort']} != listen port {port}")
    config_arg = c["args"][c["args"].index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    if config_arg != mounts["config"] + "/tradeserve.toml":
        problems.append(f"--config {config_arg} is not in the config mount {mounts['config']}")
    for key, path in [
        ("keys.toml", config["auth"]["keys_file"]),
        ("audit-chain.key", config["events"]["audit_chain_key_file"]),
    ]:
        if path != f"{mounts['secrets']}/{key}":
            problems.append(f"{path} is not the secret mount's {key}")
    wanted = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    wanted |= {i["key"] for v in pod["volumes"] if "secret" in v for i in v["secret"]["items"]}
    missing = wanted - set(secret["stringData"])
    if missing:
        problems.append(f"examples/secret.yaml lacks {sorted(missing)}")
    # The operator lane: its address's port is the `admin` port, the liveness and startup
    # probes use it, and the headless Service exposes it.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    admin = env.get("TRADESERVE_SERVER__ADMIN_LISTEN") or ""
    if not admin.endswith(f":{ports.get('admin')}"):
        problems.append(f"TRADESERVE_SERVER__ADMIN_LISTEN {admin!r} is not on the admin port")
    for probe in ("livenessProbe", "startupProbe"):
        if c[probe]["httpGet"]["port"] != "admin":
            problems.append(f"the {probe} must use the operator lane (port admin)")
    services = list(yaml.safe_load_all(open("deploy/k8s/service.yaml")))
    headless = next(s for s in services if s["spec"].get("clusterIP") == "None")
    if "admin" not in {p.get("targetPort") for p in headless["spec"]["ports"]}:
        problems.append("the headless Service does not expose the admin port")
    if mounts["var"] != "/opt/tradeserve/var":
        problems.append("the var volume must be mounted where the image's VOLUME is")
    dockerfile = open("Dockerfile").read()
    uid = pod["securityContext"]["runAsUser"]
    if f"USER {uid}:" not in dockerfile or f"--uid {uid}" not in dockerfile:
        problems.append(f"the Dockerfile does not run as uid {uid}")
    for p in problems:
        print("deploy check:", p)
    print("deploy files consistent" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
