"""The Helm chart's operator in a real pod: installed with Helm onto the local cluster, its pod on the
real node from the locally built runner image, it passes its probes and reconciles a FineTunePipeline
in the namespace it watches. No operator runs on the host here: every status write and child comes
from the pod, through the chart's ServiceAccount token, the ConfigMap's settings file and the
read-only root filesystem, as on a real cluster.

Without kube-proxy the `kubernetes` Service's cluster IP routes nowhere, so the release sets
``apiServer.host``/``port`` to the API server's address on the pod bridge (``LocalControlPlane``
listens there with the real node); a run pod reaches the progress endpoint by the Service's name,
which the node's DNS answers with the operator pod's address.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kaizen_api.base import GROUP, VERSION
from kaizen_local.cluster import wait_for
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.node.kubelet import NODE_LABEL, NODE_LABEL_VALUE, NODE_NAME, TAINT_KEY
from kubernetes import client
from support.helm import CHART, Helm
from support.specs import S3_SFT_SPEC

pytestmark = [pytest.mark.cluster, pytest.mark.real_node, pytest.mark.timeout(2400)]

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "kaizen.dev/test": "true"}
ON_REAL_NODE = {
    "nodeSelector": {NODE_LABEL: NODE_LABEL_VALUE},
    "tolerations": [{"key": TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# What a run pod does with the progress URL the chart configured: POST a report. Without the run's
# token the operator's progress endpoint answers 401, which proves the request reached it.
POST_PROGRESS = """
import sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
try:
    urllib.request.urlopen(request, timeout=20)
except urllib.error.HTTPError as answer:
    print(answer.code, answer.read().decode())
"""


@pytest.fixture
def release(helm: Helm, real_node_cluster: LocalControlPlane, runner_image: str) -> Iterator[dict[str, str]]:
    """The chart installed as kz-<id> in its own restricted namespace, watching one other namespace
    (pods there go to kwok's nodes); its operator pod runs on the real node."""
    cp = real_node_cluster
    name = f"kz-{uuid.uuid4().hex[:6]}"
    names = {"name": name, "namespace": f"{name}-system", "team": f"{name}-team", "full": f"{name}-operator"}
    for namespace in (names["namespace"], names["team"]):
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": RESTRICTED},
        }
        cp.request("POST", "/api/v1/namespaces", body)
    repository, tag = runner_image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "apiServer": {"host": cp.api_address, "port": cp.api_port},
        "watchNamespaces": [names["team"]],
        **ON_REAL_NODE,
    }
    values_file = cp.work_dir / f"{name}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm(
        "install",
        name,
        str(CHART),
        "-n",
        names["namespace"],
        "-f",
        str(values_file),
        kubeconfig=cp.kubeconfig,
    )
    try:
        yield names
    finally:
        helm("uninstall", name, "-n", names["namespace"], "--wait", kubeconfig=cp.kubeconfig)
        for namespace in (names["namespace"], names["team"]):
            query = {"propagationPolicy": "Background"}
            cp.request("DELETE", f"/api/v1/namespaces/{namespace}", query=query, missing_ok=True)


def operator_pod(cp: LocalControlPlane, release: dict[str, str]) -> dict[str, Any] | None:
    selector = f"app.kubernetes.io/instance={release['name']}"
    path = f"/api/v1/namespaces/{release['namespace']}/pods"
    items = cp.request("GET", path, query={"labelSelector": selector})["items"]
    return items[0] if items else None


def ready(pod: dict[str, Any] | None) -> bool:
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def log_of(cp: LocalControlPlane, namespace: str, pod: str) -> str:
    with cp.api_client() as api:
        try:
            return str(client.CoreV1Api(api).read_namespaced_pod_log(pod, namespace))
        except client.ApiException as exc:
            return f"(no log: {exc.status} {exc.reason})"


def wait_ready(cp: LocalControlPlane, release: dict[str, str]) -> dict[str, Any]:
    def up() -> dict[str, Any] | None:
        pod = operator_pod(cp, release)
        return pod if ready(pod) else None

    try:
        pod = wait_for(up, 240, 1, "the operator's pod Ready")
    except TimeoutError:
        found = operator_pod(cp, release) or {}
        name = found.get("metadata", {}).get("name", "")
        log = log_of(cp, release["namespace"], name) if name else "(no pod)"
        raise AssertionError(f"operator pod not Ready: {found.get('status')}\n{log[-4000:]}") from None
    assert pod is not None
    return pod


def test_the_charts_operator_runs_in_a_pod_and_reconciles(
    real_node_cluster: LocalControlPlane, release: dict[str, str]
) -> None:
    cp, team = real_node_cluster, release["team"]
    pod = wait_ready(cp, release)
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == NODE_NAME
    (status,) = pod["status"]["containerStatuses"]
    assert status["restartCount"] == 0, log_of(cp, release["namespace"], name)[-4000:]

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "datahub"}, "stringData": {}}
    cp.request("POST", f"/api/v1/namespaces/{team}/secrets", secret)
    models = f"/apis/{GROUP}/{VERSION}/namespaces/{team}/privatemodels"
    storage = {"s3": {"connection": {"name": "datahub"}, "bucket": "models", "key": "out/"}}
    model = {"metadata": {"name": "out"}, "spec": {"title": "Output", "storage": storage}}
    cp.request("POST", models, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PrivateModel", **model})
    pipelines = f"/apis/{GROUP}/{VERSION}/namespaces/{team}/finetunepipelines"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTunePipeline", "metadata": {"name": "one"}}
    created = cp.request("POST", pipelines, {**body, "spec": S3_SFT_SPEC})

    def reconciled() -> dict[str, Any] | None:
        current = cp.request("GET", f"{pipelines}/one")
        status = current.get("status") or {}
        done = status.get("observedGeneration") == created["metadata"]["generation"] and status.get("runs")
        return current if done and status.get("conditions") else None

    try:
        pipeline = wait_for(reconciled, 120, 0.5, "the pipeline's status from the in-pod operator")
    except TimeoutError:
        raise AssertionError(log_of(cp, release["namespace"], name)[-4000:]) from None
    assert pipeline is not None
    selector = "kaizen.dev/pipeline=one,kaizen.dev/component=preflight"
    jobs = f"/apis/batch/v1/namespaces/{team}/jobs"
    (job,) = wait_for(lambda: cp.request("GET", jobs, query={"labelSelector": selector})["items"], 60)
    assert [o["uid"] for o in job["metadata"]["ownerReferences"]] == [pipeline["metadata"]["uid"]]
    assert job["metadata"]["name"].startswith(pipeline["status"]["runs"][-1]["objectName"])

    # A run pod's view: the progress URL the chart configured (the Service's name) reaches the operator.
    config = cp.request("GET", f"/api/v1/namespaces/{release['namespace']}/configmaps/{release['full']}")
    progress_url = yaml.safe_load(config["data"]["config.yaml"])["progress_url"]
    assert progress_url == f"http://{release['full']}.{release['namespace']}.svc:8081"
    container = {
        "name": "report",
        "image": pod["spec"]["containers"][0]["image"],
        "imagePullPolicy": "Never",
        "command": ["python", "-c", POST_PROGRESS, f"{progress_url}/runs/{team}/one-none"],
        "securityContext": RESTRICTED_CONTAINER,
    }
    reporter = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "report"},
        "spec": {"restartPolicy": "Never", "containers": [container], **ON_REAL_NODE},
    }
    pods = f"/api/v1/namespaces/{release['namespace']}/pods"
    cp.request("POST", pods, reporter)

    def finished() -> dict[str, Any] | None:
        current = cp.request("GET", f"{pods}/report")
        return current if current.get("status", {}).get("phase") in {"Succeeded", "Failed"} else None

    done = wait_for(finished, 180, 0.5, "the reporting pod")
    assert done is not None
    output = log_of(cp, release["namespace"], "report")
    assert done["status"]["phase"] == "Succeeded", output[-3000:]
    code, answer = output.strip().split(" ", 1)
    assert (code, json.loads(answer)) == ("401", {"error": "a bearer token is required"}), output
    # The operator is still the same pod, Ready, never restarted (its liveness probe kept passing).
    after = operator_pod(cp, release)
    assert after is not None and after["metadata"]["name"] == name and ready(after)
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    log = log_of(cp, release["namespace"], name)
    assert not log.startswith("(no log"), log
    assert not re.search(r"\b403\b|forbidden|traceback", log, re.IGNORECASE), log[-4000:]
