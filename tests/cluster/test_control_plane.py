"""The local control plane behaves like a cluster where Kaizen's Jobs run: real scheduling against GPU
capacity, Jobs that complete or fail through kwok, garbage collection, RBAC, and real CRD schemas.

Objects go through ``control_plane.request`` as plain JSON, as an operator's manifests would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kaizen_operator.kube import ApiError
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from support.controlplane import (
    FAKE_DURATION_ANNOTATION,
    FAKE_EXIT_CODE_LABEL,
    FAKE_NODES,
    FAKE_TERMINATION_MESSAGE_ANNOTATION,
    K8S_VERSION,
    THIRD_PARTY_CRDS_DIR,
    Cluster,
    wait_for,
)

pytestmark = pytest.mark.cluster

PYTORCHJOB_CRD = "pytorchjobs.kubeflow.org"
UNSCHEDULABLE_OBSERVATION_S = 5  # the scheduler retries on every node/pod event; none should help


def job_manifest(
    name: str,
    gpus: int = 0,
    pod_labels: dict[str, str] | None = None,
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "trainer", "image": "registry.invalid/kaizen/runner:test"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": pod_labels or {}, "annotations": pod_annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def jobs_path(namespace: str) -> str:
    return f"/apis/batch/v1/namespaces/{namespace}/jobs"


def job_condition(cluster: Cluster, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
    job = cluster.request("GET", f"{jobs_path(namespace)}/{name}")
    conditions = job.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind and c["status"] == "True"), None)


def job_pods(cluster: Cluster, namespace: str, job: str) -> list[dict[str, Any]]:
    query = {"labelSelector": f"batch.kubernetes.io/job-name={job}"}
    return list(cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods", query=query)["items"])


def test_api_server_version_and_crds_established(control_plane: Cluster) -> None:
    with control_plane.api_client() as api:  # the typed client works against it too
        assert client.VersionApi(api).get_code().git_version == K8S_VERSION

    # controller-gen names files <group>_<plural>.yaml, so the expected CRD names need no YAML parsing.
    third_party = {
        "{1}.{0}".format(*path.stem.split("_", 1)) for path in THIRD_PARTY_CRDS_DIR.rglob("*.yaml")
    }
    assert third_party <= set(control_plane.crd_names)
    for name in control_plane.crd_names:
        crd = control_plane.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", name


def test_gpu_job_is_scheduled_on_a_gpu_node_and_completes(control_plane: Cluster, namespace: str) -> None:
    control_plane.request("POST", jobs_path(namespace), job_manifest("train", gpus=2))

    wait_for(
        lambda: job_condition(control_plane, namespace, "train", "Complete"), timeout=60, what="Complete"
    )
    (pod,) = job_pods(control_plane, namespace, "train")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    node = control_plane.request("GET", f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 2
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"]


def test_job_asking_more_gpus_than_any_node_has_stays_unschedulable(
    control_plane: Cluster, namespace: str
) -> None:
    gpus = max(node.gpus for node in FAKE_NODES) * 2
    control_plane.request("POST", jobs_path(namespace), job_manifest("too-big", gpus=gpus))

    def unschedulable() -> dict[str, Any] | None:
        for pod in job_pods(control_plane, namespace, "too-big"):
            for condition in pod["status"].get("conditions", []):
                if condition["type"] == "PodScheduled" and condition["status"] == "False":
                    return condition
        return None

    condition = wait_for(unschedulable, timeout=30, what="PodScheduled=False")
    assert condition["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in condition["message"]
    time.sleep(UNSCHEDULABLE_OBSERVATION_S)
    (pod,) = job_pods(control_plane, namespace, "too-big")
    assert "nodeName" not in pod["spec"]
    assert pod["status"]["phase"] == "Pending"
    status = control_plane.request("GET", f"{jobs_path(namespace)}/too-big")["status"]
    assert not status.get("succeeded") and not status.get("failed")


def test_fake_exit_code_label_fails_the_job(control_plane: Cluster, namespace: str) -> None:
    manifest = job_manifest(
        "oom",
        gpus=1,
        pod_labels={FAKE_EXIT_CODE_LABEL: "137"},
        pod_annotations={FAKE_TERMINATION_MESSAGE_ANNOTATION: "CUDA out of memory"},
    )
    control_plane.request("POST", jobs_path(namespace), manifest)

    failed = wait_for(
        lambda: job_condition(control_plane, namespace, "oom", "Failed"), timeout=60, what="Failed"
    )
    assert failed["reason"] == "BackoffLimitExceeded"
    (pod,) = job_pods(control_plane, namespace, "oom")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 137
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "CUDA out of memory"


def test_deleting_a_job_garbage_collects_its_pods(control_plane: Cluster, namespace: str) -> None:
    manifest = job_manifest("long", pod_annotations={FAKE_DURATION_ANNOTATION: "1h"})
    control_plane.request("POST", jobs_path(namespace), manifest)
    wait_for(
        lambda: [p for p in job_pods(control_plane, namespace, "long") if p["status"]["phase"] == "Running"],
        timeout=60,
        what="pod Running",
    )

    control_plane.request("DELETE", f"{jobs_path(namespace)}/long", query={"propagationPolicy": "Background"})
    wait_for(
        lambda: (
            not job_pods(control_plane, namespace, "long")
            and not control_plane.exists(f"{jobs_path(namespace)}/long")
        ),
        timeout=60,
        what="Job and pods deleted",
    )


def test_job_created_from_a_cronjob_template_completes(control_plane: Cluster, namespace: str) -> None:
    cronjobs = f"/apis/batch/v1/namespaces/{namespace}/cronjobs"
    cronjob = control_plane.request(
        "POST",
        cronjobs,
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly-eval"},
            # suspended: the controller must not start Jobs by the wall clock during the test
            "spec": {
                "schedule": "0 3 * * *",
                "suspend": True,
                "jobTemplate": {"spec": job_manifest("unused", gpus=1)["spec"]},
            },
        },
    )
    # What `kubectl create job --from=cronjob/nightly-eval` does.
    owner = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": cronjob["metadata"]["name"],
        "uid": cronjob["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "nightly-eval-manual",
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [owner],
        },
        "spec": cronjob["spec"]["jobTemplate"]["spec"],
    }
    control_plane.request("POST", jobs_path(namespace), job)
    wait_for(
        lambda: job_condition(control_plane, namespace, "nightly-eval-manual", "Complete"),
        timeout=60,
        what="Complete",
    )

    control_plane.request("DELETE", f"{cronjobs}/nightly-eval", query={"propagationPolicy": "Background"})
    wait_for(
        lambda: not control_plane.exists(f"{jobs_path(namespace)}/nightly-eval-manual"),
        timeout=60,
        what="Job garbage-collected with its CronJob",
    )


def pytorchjob_manifest(name: str) -> dict[str, Any]:
    def replica(replicas: int) -> dict[str, Any]:
        container = {
            "name": "pytorch",
            "image": "registry.invalid/kaizen/runner:test",
            "command": ["torchrun", "-m", "kaizen_runner.train"],
            "resources": {"limits": {"nvidia.com/gpu": 8}},
        }
        return {
            "replicas": replicas,
            "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [container]}},
        }

    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "nprocPerNode": "8",
            "runPolicy": {"suspend": True, "backoffLimit": 3, "cleanPodPolicy": "Running"},
            "pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(1)},
        },
    }


@pytest.fixture
def create_pytorchjob(control_plane: Cluster, namespace: str) -> Callable[[dict[str, Any]], Any]:
    if PYTORCHJOB_CRD not in control_plane.crd_names:
        pytest.skip(f"{PYTORCHJOB_CRD} not installed (third-party CRDs missing in {THIRD_PARTY_CRDS_DIR})")
    path = f"/apis/kubeflow.org/v1/namespaces/{namespace}/pytorchjobs"
    return lambda manifest: control_plane.request("POST", path, manifest)


def test_pytorchjob_with_master_and_worker_is_accepted(
    create_pytorchjob: Callable[[dict[str, Any]], Any],
) -> None:
    created = create_pytorchjob(pytorchjob_manifest("ft-run-1"))
    specs = created["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"}
    assert specs["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8


def _drop_replica_specs(spec: dict[str, Any]) -> None:
    del spec["pytorchReplicaSpecs"]


def _replicas_as_text(spec: dict[str, Any]) -> None:
    spec["pytorchReplicaSpecs"]["Worker"]["replicas"] = "two"


def _unnamed_container(spec: dict[str, Any]) -> None:
    del spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"]


@pytest.mark.parametrize(
    ("breakage", "field"),
    [
        (_drop_replica_specs, "spec.pytorchReplicaSpecs"),
        (_replicas_as_text, "spec.pytorchReplicaSpecs.Worker.replicas"),
        (_unnamed_container, "spec.pytorchReplicaSpecs.Master.template.spec.containers[0].name"),
    ],
    ids=["no-replica-specs", "replicas-not-integer", "container-without-name"],
)
def test_malformed_pytorchjob_is_rejected(
    create_pytorchjob: Callable[[dict[str, Any]], Any], breakage: Callable[[dict[str, Any]], None], field: str
) -> None:
    manifest = pytorchjob_manifest("broken")
    breakage(manifest["spec"])
    with pytest.raises(ApiError) as rejected:
        create_pytorchjob(manifest)
    assert rejected.value.status == 422
    assert field in rejected.value.message


def test_rbac_applies_to_service_accounts(control_plane: Cluster, namespace: str, tmp_path: Path) -> None:
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}}
    control_plane.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
    kubeconfig = control_plane.kubeconfig_for_service_account(namespace, "operator", tmp_path / "kubeconfig")
    with config.new_client_from_config(config_file=str(kubeconfig)) as as_operator:
        jobs = client.BatchV1Api(as_operator)
        with pytest.raises(ApiException) as denied:
            jobs.list_namespaced_job(namespace)
        assert denied.value.status == 403

        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
        rule = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "jobs-reader"},
        }
        control_plane.request("POST", f"{rbac}/roles", {**role, "rules": [rule]})
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "operator-jobs-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jobs-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
        }
        control_plane.request("POST", f"{rbac}/rolebindings", binding)

        def allowed() -> bool:
            try:
                jobs.list_namespaced_job(namespace)
            except ApiException as exc:
                if exc.status == 403:
                    return False
                raise
            return True

        wait_for(allowed, timeout=10, what="the RoleBinding to take effect")
