"""End-to-end groundwork: a pod of the runner image on the real node reads the host's S3 server with
credentials from a Secret (``secretKeyRef``), as the operator's run pods do."""

from __future__ import annotations

import pytest
from kaizen_local.cluster import wait_for
from kubernetes import client
from support.realnode import RealNodeEnv

# A cold build of the runner image (tools/dev.sh setup makes it first) takes minutes.
pytestmark = [pytest.mark.cluster, pytest.mark.real_node, pytest.mark.timeout(2400)]

READ_BUCKET = """
from kaizen_runner.storage import ObjectStore, S3Connection
store = ObjectStore(S3Connection.from_env())
print([item.key for item in store.list("datasets")])
print(store.get_bytes("datasets", "alpaca/train.json").decode())
"""


def test_runner_pod_reads_s3_with_secret_credentials(real_node_env: RealNodeEnv) -> None:
    env = real_node_env
    s3 = env.s3.client()
    s3.create_bucket(Bucket="datasets")
    s3.put_object(Bucket="datasets", Key="alpaca/train.json", Body=b'[{"instruction": "hi"}]')
    secret = env.create_s3_secret()
    variables = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    container = {
        "name": "reader",
        "image": env.runner_image,
        "imagePullPolicy": "Never",
        "command": ["python", "-c", READ_BUCKET],
        "env": [{"name": v, "valueFrom": {"secretKeyRef": {"name": secret, "key": v}}} for v in variables],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader"},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }
    env.cluster.request("POST", f"/api/v1/namespaces/{env.namespace}/pods", pod)

    def finished() -> dict | None:
        current = env.cluster.request("GET", f"/api/v1/namespaces/{env.namespace}/pods/reader")
        return current if current.get("status", {}).get("phase") in {"Succeeded", "Failed"} else None

    done = wait_for(finished, timeout=180, interval=0.5, what="the reader pod to finish")
    with env.cluster.api_client() as api:
        output = client.CoreV1Api(api).read_namespaced_pod_log("reader", env.namespace)
    assert done["status"]["phase"] == "Succeeded", output[-3000:]
    assert output.splitlines() == ["['alpaca/train.json']", '[{"instruction": "hi"}]'], output
