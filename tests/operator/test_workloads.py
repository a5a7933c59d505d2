"""Workload builders: labels, owner references, restricted pods, GPUs, retries, Kueue, every backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from api.manifests import DELETE
from kaizen_api.finetune_status import RunStatus
from kaizen_api.results import EXIT_USER_ERROR
from kaizen_api.runconfig import TrainRunConfig
from kaizen_operator.resolve import ResolveError
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads import (
    asks_for_pytorchjobs,
    build_config_map,
    build_preflight_job,
    build_token_secret,
    build_workload,
    workload_kind,
)
from support.pipelines import MULTI, SETTINGS, UID, everything, pipeline, resolved

SHARED = Path(__file__).resolve().parents[3] / "shared"
PYTORCHJOB_CRD = (
    SHARED / "third-party-crds" / "kubeflow-training-operator-v1.9.0" / "kubeflow.org_pytorchjobs.yaml"
)
SECRET_VALUES = ("AKIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
POD_VOLUME_TYPES = {"configMap", "emptyDir", "secret", "persistentVolumeClaim", "downwardAPI", "projected"}


def pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every pod spec inside a manifest (Job, CronJob, PyTorchJob replicas)."""
    if isinstance(obj, dict):
        if "containers" in obj:
            yield obj
        for value in obj.values():
            yield from pod_specs(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from pod_specs(value)


@pytest.mark.parametrize("example", ["finetune-sft-alpaca.yaml", MULTI])
@pytest.mark.parametrize("pytorchjob", [True, False])
def test_children_carry_kaizen_labels_and_an_owner_never_the_crs_labels(
    example: str, pytorchjob: bool
) -> None:
    for obj in everything(example, pytorchjob=pytorchjob):
        meta = obj["metadata"]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "kaizen"
        assert labels["kaizen.dev/pipeline"] == pipeline(example)["metadata"]["name"]
        if obj["kind"] != "CronJob":
            assert labels["kaizen.dev/run"]
        # The pipeline's own labels (team, app.kubernetes.io/name, a forged queue label) never leak.
        assert "team" not in labels and "app.kubernetes.io/name" not in labels
        assert labels.get("kueue.x-k8s.io/queue-name") in (None, "team-a")
        assert "kubectl.kubernetes.io/last-applied-configuration" not in meta.get("annotations", {})
        (owner,) = meta["ownerReferences"]
        assert owner["uid"] == UID and owner["kind"] == "FineTunePipeline"
        assert owner["controller"] and owner["blockOwnerDeletion"]


@pytest.mark.parametrize("example", ["finetune-sft-alpaca.yaml", MULTI, "finetune-sft-image.yaml"])
@pytest.mark.parametrize("pytorchjob", [True, False])
def test_every_pod_meets_the_restricted_profile(example: str, pytorchjob: bool) -> None:
    specs = [spec for obj in everything(example, pytorchjob=pytorchjob) for spec in pod_specs(obj)]
    assert len(specs) >= 2
    for spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert not {"hostNetwork", "hostPID", "hostIPC"} & spec.keys()
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= POD_VOLUME_TYPES, volume
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True and sc["seccompProfile"]["type"] == "RuntimeDefault"
            assert sc["readOnlyRootFilesystem"] is True
            assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
            writable = {m["mountPath"] for m in container.get("volumeMounts", []) if not m.get("readOnly")}
            if container["name"] != "trigger":
                assert {"/work", "/tmp"} <= writable  # scratch where the runner writes
                env = {e["name"]: e.get("value") for e in container["env"]}
                assert env["KAIZEN_WORK_DIR"] == "/work" and env["HOME"].startswith("/tmp")


def test_no_secret_value_reaches_a_config_map() -> None:
    run = resolved()
    config_map = build_config_map(run, pipeline(), run.names)
    text = json.dumps(config_map)
    for value in (*SECRET_VALUES, "tok-123"):
        assert value not in text
    cfg = TrainRunConfig.model_validate_json(config_map["data"]["run.json"])
    assert cfg.dataset.connection == "datahub"  # a name, resolved by the runner from its mounted Secret
    assert config_map["immutable"] is True
    # The token lives in its Secret, and pods reach it only through a secretKeyRef.
    secret = build_token_secret(run.names, pipeline(), "tok-123")
    assert secret["stringData"] == {"token": "tok-123"} and secret["kind"] == "Secret"
    (job,) = build_workload(run, pipeline(), run.names, SETTINGS, pytorchjob_available=True)
    (env,) = [
        e
        for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "KAIZEN_PROGRESS_TOKEN"
    ]
    assert env["valueFrom"]["secretKeyRef"] == {"name": run.names.token_secret, "key": "token"}
    for obj in everything("finetune-sft-alpaca.yaml"):
        if obj["kind"] != "Secret":
            assert "tok-123" not in json.dumps(obj)


def gpu_requests(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [c.get("resources", {}) for spec in pod_specs(obj) for c in spec["containers"]]


def test_single_node_job_requests_its_gpus_and_the_preflight_none() -> None:
    run = resolved("finetune-sft-image.yaml")  # 2 GPUs on one node
    doc = pipeline("finetune-sft-image.yaml")
    (job,) = build_workload(run, doc, run.names, SETTINGS, pytorchjob_available=True)
    assert job["kind"] == "Job" and job["metadata"]["name"] == run.names.job
    (resources,) = gpu_requests(job)
    assert resources["requests"]["nvidia.com/gpu"] == "2" and resources["limits"]["nvidia.com/gpu"] == "2"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["train", "--config", "/etc/kaizen/run.json"]
    assert {"name": "PET_NPROC_PER_NODE", "value": "2"} in container["env"]
    assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])

    for example in ("finetune-sft-image.yaml", MULTI):
        preflight = build_preflight_job(
            resolved(example), pipeline(example), resolved(example).names, SETTINGS
        )
        text = json.dumps(preflight)
        assert "nvidia.com/gpu" not in text  # no request, no limit, no node selector, no toleration
        assert "kueue.x-k8s.io/queue-name" not in text and "suspend" not in preflight["spec"]
        args = preflight["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:3] == ["plan", "--config", "/etc/kaizen/run.json"]
        assert "KAIZEN_PROGRESS_TOKEN" not in text


def test_retries_fail_fast_on_user_errors_and_ignore_disruptions() -> None:
    settings = OperatorSettings(backoff_limit=3, ttl_seconds_after_finished=600)
    changes = {"spec.activeDeadlineSeconds": 7200}
    run = resolved(changes=changes)
    (job,) = build_workload(run, pipeline(changes=changes), run.names, settings, pytorchjob_available=False)
    spec = job["spec"]
    assert spec["backoffLimit"] == 3 and spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    fail, ignore = spec["podFailurePolicy"]["rules"]
    assert fail == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [EXIT_USER_ERROR]},
    }
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def test_kueue_gets_a_suspended_job_only_when_a_queue_is_set() -> None:
    run = resolved()
    (job,) = build_workload(run, pipeline(), run.names, SETTINGS, pytorchjob_available=False)
    assert "suspend" not in job["spec"] and "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    queued = {"spec.resources": {"queueName": "team-b", "priorityClassName": "high"}}
    run = resolved(changes=queued)
    (job,) = build_workload(run, pipeline(changes=queued), run.names, SETTINGS, pytorchjob_available=False)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-b"
    assert job["spec"]["template"]["spec"]["priorityClassName"] == "high"


def test_pytorchjob_has_master_and_workers_and_fits_the_crd_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    run = resolved(MULTI)
    (job,) = build_workload(run, pipeline(MULTI), run.names, SETTINGS, pytorchjob_available=True)
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    spec = job["spec"]
    assert spec["nprocPerNode"] == "8" and int(spec["nprocPerNode"]) == 8
    replicas = spec["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1
    for role in ("Master", "Worker"):
        pod = replicas[role]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["runPolicy"]["suspend"] is True  # queue team-a: Kueue admits it
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    crd = yaml.safe_load(PYTORCHJOB_CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.validate(job, schema)


def test_indexed_job_backend_without_the_crd() -> None:
    run = resolved(MULTI)
    assert workload_kind(run, SETTINGS, pytorchjob_available=False) == "Job"
    service, job = build_workload(run, pipeline(MULTI), run.names, SETTINGS, pytorchjob_available=False)
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] == run.names.service
    labels = spec["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    master = f"{run.names.job}-0.{run.names.service}"
    assert env["PET_MASTER_ADDR"]["value"] == env["MASTER_ADDR"]["value"] == master
    assert env["PET_NNODES"]["value"] == "2" and env["PET_NPROC_PER_NODE"]["value"] == "8"
    assert env["PET_MASTER_PORT"]["value"] == env["MASTER_PORT"]["value"] == "29500"
    rank = env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert rank == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [EXIT_USER_ERROR]


def test_backend_choice_follows_the_spec_then_the_settings() -> None:
    indexed = resolved(MULTI, {"spec.resources.multiNodeBackend": "indexedjob"})
    assert workload_kind(indexed, SETTINGS, pytorchjob_available=True) == "Job"
    run = resolved(MULTI)
    assert workload_kind(run, SETTINGS, pytorchjob_available=True) == "PyTorchJob"
    forced = OperatorSettings(multinode_backend="indexedjob")
    assert workload_kind(run, forced, pytorchjob_available=True) == "Job"
    with pytest.raises(ResolveError) as info:
        workload_kind(run, OperatorSettings(multinode_backend="pytorchjob"), pytorchjob_available=False)
    assert info.value.reason == "CRDMissing"
    single = resolved(MULTI, {"spec.resources.nodes": 1})
    assert workload_kind(single, SETTINGS, pytorchjob_available=True) == "Job"


def test_the_pipelines_backend_decides_whether_pytorchjobs_are_looked_for() -> None:
    two = [RunStatus(name="ft_m_20261201120000", nodes=2)]
    indexed = OperatorSettings(multinode_backend="indexedjob")
    assert asks_for_pytorchjobs(two, "pytorchjob", indexed)  # the spec's field wins over the setting
    assert not asks_for_pytorchjobs(two, None, indexed)
    assert not asks_for_pytorchjobs(two, "indexedjob", SETTINGS)
    assert asks_for_pytorchjobs(two, None, SETTINGS)  # auto
    assert not asks_for_pytorchjobs([RunStatus(name="ft_m_20261201120000", nodes=1)], "pytorchjob", SETTINGS)
    # A run that has a PyTorchJob is observed whatever the spec or the setting say now.
    had = [RunStatus(name="ft_m_20261201120000", nodes=2, job_kind="PyTorchJob")]
    assert asks_for_pytorchjobs(had, "indexedjob", indexed)


def test_preflight_mounts_the_run_volumes_read_only() -> None:
    changes = {"spec.validationDataset": DELETE}
    storage = {"pvc": {"claimName": "models", "path": "support"}}
    run = resolved(changes=changes, storage=storage)
    doc = pipeline(changes=changes)
    preflight = build_preflight_job(run, doc, run.names, SETTINGS)
    pod = preflight["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    (job,) = build_workload(run, doc, run.names, SETTINGS, pytorchjob_available=False)
    claim = next(v for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"]["readOnly"] is False  # the training run writes its output there


def test_a_pipeline_with_a_253_character_name_still_gets_valid_children() -> None:
    import re

    label_value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    long_name = ("nightly." * 31 + "sharegpt")[:253].rstrip(".")
    for obj in everything(MULTI, **{"metadata.name": long_name}):
        meta = obj["metadata"]
        assert len(meta["name"]) <= 63
        for value in meta["labels"].values():
            assert len(value) <= 63 and label_value.match(value), value
        assert meta["ownerReferences"][0]["name"] == long_name


def test_indexed_job_environment_is_what_the_runners_launcher_reads() -> None:
    from kaizen_runner.train.launch import needs_launcher, node_rank, torchrun_argv

    run = resolved(MULTI)
    _, job = build_workload(run, pipeline(MULTI), run.names, SETTINGS, pytorchjob_available=False)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    # What the kubelet makes of it on the pod with completion index 1.
    env = {
        e["name"]: e.get("value", "1")
        for e in container["env"]
        if "secretKeyRef" not in e.get("valueFrom", {})
    }
    env["JOB_COMPLETION_INDEX"] = "1"
    assert needs_launcher(env) and node_rank(env) == 1
    # Every topology setting is in PET_*, which torchrun reads itself: the runner adds nothing.
    assert torchrun_argv(env, None, container["args"]) == [
        "--module",
        "kaizen_runner.cli",
        *container["args"],
    ]


def test_preflight_goes_to_the_configured_cpu_queue_only() -> None:
    from kaizen_operator.settings import PodDefaults

    run = resolved(MULTI)
    settings = OperatorSettings(pods=PodDefaults(preflight_queue_name="cpu-preflight"))
    preflight = build_preflight_job(run, pipeline(MULTI), run.names, settings)
    assert preflight["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "cpu-preflight"
    assert preflight["spec"]["suspend"] is True
    assert "nvidia.com/gpu" not in json.dumps(preflight)


def test_pods_agree_with_the_runner_image() -> None:
    """The UID and scratch folders the pods assume are the ones the Dockerfile sets up."""
    from kaizen_operator.workloads.pod import WORK_DIR

    dockerfile = (Path(__file__).resolve().parents[2] / "runner-image" / "Dockerfile").read_text()
    uid = SETTINGS.pods.run_as_user
    assert f"--uid {uid} " in dockerfile and f"USER {uid}" in dockerfile
    assert f"KAIZEN_WORK_DIR={WORK_DIR}" in dockerfile and 'ENTRYPOINT ["kaizen-runner"]' in dockerfile
