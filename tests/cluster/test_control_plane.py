"""The local control plane behaves like a cluster where Kaizen's Jobs run: real scheduling against GPU
capacity, Jobs that complete or fail through kwok, garbage collection, RBAC, and real CRD schemas."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
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


@pytest.fixture(scope="module")
def api(control_plane: Cluster) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api_client:
        yield api_client


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


def job_condition(
    api: client.ApiClient, namespace: str, name: str, kind: str
) -> client.V1JobCondition | None:
    job = client.BatchV1Api(api).read_namespaced_job(name, namespace)
    return next((c for c in job.status.conditions or [] if c.type == kind and c.status == "True"), None)


def job_pods(api: client.ApiClient, namespace: str, job: str) -> list[client.V1Pod]:
    selector = f"batch.kubernetes.io/job-name={job}"
    return list(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)


def exists(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_api_server_version_and_crds_established(control_plane: Cluster, api: client.ApiClient) -> None:
    assert client.VersionApi(api).get_code().git_version == K8S_VERSION

    # controller-gen names files <group>_<plural>.yaml, so the expected CRD names need no YAML parsing.
    third_party = {
        "{1}.{0}".format(*path.stem.split("_", 1)) for path in THIRD_PARTY_CRDS_DIR.rglob("*.yaml")
    }
    assert third_party <= set(control_plane.crd_names)
    ext = client.ApiextensionsV1Api(api)
    for name in control_plane.crd_names:
        # raw JSON: the client's models take seconds to deserialise a megabyte of schema
        crd = json.loads(ext.read_custom_resource_definition(name, _preload_content=False).data)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", name


def test_gpu_job_is_scheduled_on_a_gpu_node_and_completes(api: client.ApiClient, namespace: str) -> None:
    client.BatchV1Api(api).create_namespaced_job(namespace, job_manifest("train", gpus=2))

    wait_for(lambda: job_condition(api, namespace, "train", "Complete"), timeout=60, what="Job Complete")
    (pod,) = job_pods(api, namespace, "train")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    node = client.CoreV1Api(api).read_node(pod.spec.node_name)
    assert int(node.status.allocatable["nvidia.com/gpu"]) >= 2
    assert node.metadata.labels["nvidia.com/gpu.product"]


def test_job_asking_more_gpus_than_any_node_has_stays_unschedulable(
    api: client.ApiClient, namespace: str
) -> None:
    gpus = max(node.gpus for node in FAKE_NODES) * 2
    client.BatchV1Api(api).create_namespaced_job(namespace, job_manifest("too-big", gpus=gpus))

    def unschedulable() -> client.V1PodCondition | None:
        for pod in job_pods(api, namespace, "too-big"):
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.status == "False":
                    return condition
        return None

    condition = wait_for(unschedulable, timeout=30, what="PodScheduled=False")
    assert condition.reason == "Unschedulable"
    assert "nvidia.com/gpu" in condition.message
    time.sleep(UNSCHEDULABLE_OBSERVATION_S)
    (pod,) = job_pods(api, namespace, "too-big")
    assert pod.spec.node_name is None
    assert pod.status.phase == "Pending"
    job = client.BatchV1Api(api).read_namespaced_job("too-big", namespace)
    assert not job.status.succeeded and not job.status.failed


def test_fake_exit_code_label_fails_the_job(api: client.ApiClient, namespace: str) -> None:
    manifest = job_manifest(
        "oom",
        gpus=1,
        pod_labels={FAKE_EXIT_CODE_LABEL: "137"},
        pod_annotations={FAKE_TERMINATION_MESSAGE_ANNOTATION: "CUDA out of memory"},
    )
    client.BatchV1Api(api).create_namespaced_job(namespace, manifest)

    failed = wait_for(lambda: job_condition(api, namespace, "oom", "Failed"), timeout=60, what="Job Failed")
    assert failed.reason == "BackoffLimitExceeded"
    (pod,) = job_pods(api, namespace, "oom")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (
        137,
        "Error",
        "CUDA out of memory",
    )


def test_deleting_a_job_garbage_collects_its_pods(api: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(api)
    manifest = job_manifest("long", pod_annotations={FAKE_DURATION_ANNOTATION: "1h"})
    batch.create_namespaced_job(namespace, manifest)
    wait_for(
        lambda: [p for p in job_pods(api, namespace, "long") if p.status.phase == "Running"],
        timeout=60,
        what="pod Running",
    )

    batch.delete_namespaced_job("long", namespace, propagation_policy="Background")
    wait_for(
        lambda: (
            not job_pods(api, namespace, "long")
            and not exists(lambda: batch.read_namespaced_job("long", namespace))
        ),
        timeout=60,
        what="Job and pods deleted",
    )


def test_job_created_from_a_cronjob_template_completes(api: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(api)
    cronjob = batch.create_namespaced_cron_job(
        namespace,
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
    template = api.sanitize_for_serialization(cronjob.spec.job_template)
    owner = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": cronjob.metadata.name,
        "uid": cronjob.metadata.uid,
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
        "spec": template["spec"],
    }
    batch.create_namespaced_job(namespace, job)
    wait_for(
        lambda: job_condition(api, namespace, "nightly-eval-manual", "Complete"), timeout=60, what="Complete"
    )

    batch.delete_namespaced_cron_job("nightly-eval", namespace, propagation_policy="Background")
    wait_for(
        lambda: not exists(lambda: batch.read_namespaced_job("nightly-eval-manual", namespace)),
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
def pytorchjobs(
    control_plane: Cluster, api: client.ApiClient, namespace: str
) -> Callable[[dict[str, Any]], Any]:
    if PYTORCHJOB_CRD not in control_plane.crd_names:
        pytest.skip(f"{PYTORCHJOB_CRD} not installed (third-party CRDs missing in {THIRD_PARTY_CRDS_DIR})")
    custom = client.CustomObjectsApi(api)
    return lambda body: custom.create_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", body
    )


def test_pytorchjob_with_master_and_worker_is_accepted(pytorchjobs: Callable[[dict[str, Any]], Any]) -> None:
    created = pytorchjobs(pytorchjob_manifest("ft-run-1"))
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
    pytorchjobs: Callable[[dict[str, Any]], Any], breakage: Callable[[dict[str, Any]], None], field: str
) -> None:
    manifest = pytorchjob_manifest("broken")
    breakage(manifest["spec"])
    with pytest.raises(ApiException) as rejected:
        pytorchjobs(manifest)
    assert rejected.value.status == 422
    assert field in rejected.value.body


def test_rbac_applies_to_service_accounts(
    control_plane: Cluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    client.CoreV1Api(api).create_namespaced_service_account(namespace, {"metadata": {"name": "operator"}})
    kubeconfig = control_plane.kubeconfig_for_service_account(namespace, "operator", tmp_path / "kubeconfig")
    with config.new_client_from_config(config_file=str(kubeconfig)) as as_operator:
        jobs = client.BatchV1Api(as_operator)
        with pytest.raises(ApiException) as denied:
            jobs.list_namespaced_job(namespace)
        assert denied.value.status == 403

        rbac = client.RbacAuthorizationV1Api(api)
        rule = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}
        rbac.create_namespaced_role(namespace, {"metadata": {"name": "jobs-reader"}, "rules": [rule]})
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "operator-jobs-reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jobs-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
            },
        )

        def allowed() -> bool:
            try:
                jobs.list_namespaced_job(namespace)
            except ApiException as exc:
                if exc.status == 403:
                    return False
                raise
            return True

        wait_for(allowed, timeout=10, what="the RoleBinding to take effect")
