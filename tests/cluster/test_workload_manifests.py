"""Every manifest the pure builders produce is accepted by the real API server as written (strict field
validation, dry run), and every pod they template is admitted under the `restricted` Pod Security
profile."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kaizen_operator.kube import ApiError
from support.pipelines import MULTI, everything

pytestmark = pytest.mark.cluster
PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "CronJob": "/apis/batch/v1/namespaces/{ns}/cronjobs",
    "PyTorchJob": "/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs",
}
DRY_RUN = {"dryRun": "All", "fieldValidation": "Strict"}


def templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every PodTemplateSpec inside a manifest."""
    found = []
    if isinstance(obj, dict):
        if "spec" in obj and isinstance(obj["spec"], dict) and "containers" in obj["spec"]:
            found.append(obj)
        for value in obj.values():
            found += templates(value)
    elif isinstance(obj, list):
        for value in obj:
            found += templates(value)
    return found


def built(example: str, namespace: str, *, pytorchjob: bool) -> list[dict[str, Any]]:
    objects = copy.deepcopy(everything(example, pytorchjob=pytorchjob))
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
    return objects


@pytest.mark.parametrize("example", ["finetune-sft-alpaca.yaml", "finetune-sft-image.yaml", MULTI])
@pytest.mark.parametrize("pytorchjob", [True, False], ids=["pytorchjob", "indexedjob"])
def test_built_manifests_are_accepted_and_pods_are_restricted(
    control_plane, namespace: str, example: str, pytorchjob: bool
) -> None:
    if pytorchjob and "pytorchjobs.kubeflow.org" not in control_plane.crd_names:
        pytest.skip("the PyTorchJob CRD is not installed")
    control_plane.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}",
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        content_type="application/merge-patch+json",
    )
    objects = built(example, namespace, pytorchjob=pytorchjob)
    for obj in objects:
        control_plane.request("POST", PATHS[obj["kind"]].format(ns=namespace), obj, query=DRY_RUN)
    pods = [t for obj in objects for t in templates(obj)]
    assert len(pods) >= 2
    for index, template in enumerate(pods):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**template["metadata"], "name": f"pod-{index}", "namespace": namespace},
            "spec": template["spec"],
        }
        control_plane.request("POST", PATHS["Pod"].format(ns=namespace), pod, query=DRY_RUN)
    # The namespace does enforce the profile: the same pod with privilege escalation is refused.
    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(ApiError) as info:
        control_plane.request("POST", PATHS["Pod"].format(ns=namespace), bad, query=DRY_RUN)
    assert info.value.status == 403 and "restricted" in info.value.message
