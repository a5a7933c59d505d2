#!/usr/bin/env python3
"""The README's demo: a local control plane (or KAIZEN_KUBECONFIG's cluster), the operator, every
manifest in examples/ applied to a namespace, and their status shown with the CRDs' printer columns.

    tools/dev.sh demo            # show status and stop
    tools/dev.sh demo --keep     # keep the cluster and operator running until Ctrl-C
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from kaizen_api.base import GROUP, VERSION
from kaizen_api.kinds import KINDS
from kaizen_local.cluster import Cluster, default_crd_files, load_crds
from kaizen_local.controlplane import LocalControlPlane
from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]

NAMESPACE = "kaizen-demo"
PLURALS = {k.kind: k.plural for k in KINDS}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def apply_examples(api: client.ApiClient) -> list[tuple[str, str]]:
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    if not core.list_namespace(field_selector=f"metadata.name={NAMESPACE}").items:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    created = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            name = doc["metadata"]["name"]
            if doc["kind"] == "Secret":
                core.create_namespaced_secret(NAMESPACE, doc)
            else:
                objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURALS[doc["kind"]], doc)
                created.append((PLURALS[doc["kind"]], name))
            print(f"applied {path.name}: {doc['kind']}/{name}")
    return created


def wait_until_observed(api: client.ApiClient, created: list[tuple[str, str]], timeout: float = 60) -> None:
    objects = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    pending = list(created)
    while pending and time.monotonic() < deadline:
        plural, name = pending[0]
        obj = objects.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name)
        if obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]:
            pending.pop(0)
        else:
            time.sleep(0.3)
    if pending:
        raise SystemExit(f"the operator did not reconcile {pending} within {timeout}s")


def print_table(api: client.ApiClient, plural: str) -> None:
    """What `kubectl get <plural>` shows: the server renders the CRD's printer columns."""
    request = api.param_serialize(
        "GET",
        f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{plural}",
        header_params={"Accept": TABLE},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request)
    response.read()
    table = json.loads(response.data)
    headers = ["NAME"] + [c["name"].upper() for c in table["columnDefinitions"] if c["priority"] == 0][1:]
    rows = [
        [
            "<none>" if v is None else str(v)
            for v, c in zip(r["cells"], table["columnDefinitions"], strict=True)
            if c["priority"] == 0
        ]
        for r in table["rows"]
    ]
    widths = [max(len(x) for x in col) for col in zip(headers, *rows, strict=True)]
    print(f"\n$ kubectl get {plural} -n {NAMESPACE}")
    for line in [headers, *rows]:
        print("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


def run(cluster: Cluster, keep: bool) -> None:
    env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
    operator = subprocess.Popen([sys.executable, "-m", "kaizen_operator.main"], env=env)
    try:
        with cluster.api_client() as api:
            created = apply_examples(api)
            wait_until_observed(api, created)
            for kind in KINDS:
                print_table(api, kind.plural)
        print(f"\nKUBECONFIG={cluster.kubeconfig}")
        if keep:
            print("cluster and operator keep running; Ctrl-C stops them")
            operator.wait()
    except KeyboardInterrupt:
        pass
    finally:
        operator.terminate()
        operator.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    args = parser.parse_args()
    if existing := os.environ.get("KAIZEN_KUBECONFIG"):
        cluster = Cluster(Path(existing))
        cluster.install_crds(load_crds(default_crd_files()))
        run(cluster, args.keep)
        return 0
    work_dir = ROOT / ".cache" / "demo-cluster"
    shutil.rmtree(work_dir, ignore_errors=True)  # a fresh etcd each time
    with LocalControlPlane(work_dir) as plane:
        print(f"control plane up in {plane.startup_seconds:.1f}s")
        run(plane, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
