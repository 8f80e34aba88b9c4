"""Publish bundled model folders to an MLflow Model Registry with MLflow's Python client.

    ~/.cache/tradeserve/mlflow-venv/bin/python training/publish.py \\
        --tracking-uri http://127.0.0.1:5000 --version 1 --alias champion

For each role (all five unless --roles narrows it) this logs `models/<role>/<version>/` as the
`model` artifact folder of a new run, registers it as a new version of `tradeserve.<role>`, and
points the alias at it. The Rust CLI does the same over REST:
`tradeserve models publish --dir models/<role>/<version> --name tradeserve.<role> --alias champion`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlflow
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
ROLES = ["regime_detector", "meta_controller", "bull_specialist", "bear_specialist", "sideways_specialist"]


def publish(client: MlflowClient, folder: Path, name: str, alias: str | None) -> str:
    if not (folder / "MLmodel").is_file():
        raise SystemExit(f"{folder} is not a model folder (no MLmodel)")
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
            raise
    mlflow.set_experiment("tradeserve-models")
    with mlflow.start_run(run_name=f"publish {name}") as run:
        mlflow.log_artifacts(str(folder), artifact_path="model")
    version = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version.version


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--version", default="1", help="bundled version folder to publish")
    p.add_argument("--alias", default="champion")
    p.add_argument("--roles", nargs="*", default=ROLES, choices=ROLES)
    args = p.parse_args()
    mlflow.set_tracking_uri(args.tracking_uri)
    client = MlflowClient(args.tracking_uri)
    published = {}
    for role in args.roles:
        folder = ROOT / "models" / role / args.version
        published[role] = publish(client, folder, f"tradeserve.{role}", args.alias or None)
    print(json.dumps({"tracking_uri": args.tracking_uri, "alias": args.alias, "versions": published}))


if __name__ == "__main__":
    main()
