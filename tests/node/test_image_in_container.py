"""The runner image, built from runner-image/Dockerfile with buildah, runs in a real container on the
real node: as its non-root user, with a read-only root filesystem, admitted under the restricted Pod
Security Standard, from containerd's store (never pulled)."""

from __future__ import annotations

import pytest
from kaizen_local.cluster import wait_for
from kaizen_local.controlplane import LocalControlPlane
from kubernetes import client

# A cold build of the runner image (tools/dev.sh setup makes it first) takes minutes.
pytestmark = [pytest.mark.cluster, pytest.mark.real_node, pytest.mark.timeout(2400)]

WHOAMI = "id -u; touch /home/kaizen/x 2>/dev/null || echo read-only"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def test_runner_help_runs_as_non_root_on_a_read_only_root(
    real_node_cluster: LocalControlPlane, real_node_namespace: str, runner_image: str
) -> None:
    ns = real_node_namespace
    real_node_cluster.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}",
        {"metadata": {"labels": RESTRICTED}},
        content_type="application/merge-patch+json",
    )
    restricted = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    common = {"image": runner_image, "imagePullPolicy": "Never", "securityContext": restricted}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runner-help"},
        "spec": {
            "restartPolicy": "Never",
            # No runAsUser: the kubelet refuses to start the image unless its own USER is non-root.
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {"name": "help", "args": ["--help"], **common},
                {"name": "whoami", "command": ["sh", "-c", WHOAMI], **common},
            ],
        },
    }
    real_node_cluster.request("POST", f"/api/v1/namespaces/{ns}/pods", pod)

    def finished() -> dict | None:
        current = real_node_cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/runner-help")
        return current if current.get("status", {}).get("phase") in {"Succeeded", "Failed"} else None

    done = wait_for(finished, timeout=180, interval=0.5, what="the runner pod to finish")
    with real_node_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        help_text = core.read_namespaced_pod_log("runner-help", ns, container="help")
        whoami = core.read_namespaced_pod_log("runner-help", ns, container="whoami")
    assert done["status"]["phase"] == "Succeeded", (done["status"], help_text[-2000:])
    assert help_text.startswith("usage: kaizen-runner"), help_text[-2000:]
    assert whoami.split() == ["1000", "read-only"], whoami
