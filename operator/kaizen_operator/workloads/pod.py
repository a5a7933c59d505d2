"""The one pod template every run pod starts from: security, placement, GPUs, volumes, environment.

Every container meets the `restricted` Pod Security profile: non-root (the runner image's UID),
no privilege escalation, all capabilities dropped, seccomp RuntimeDefault, and a read-only root
filesystem. The runner writes only where emptyDirs are mounted: `/work` (scratch: base model, data,
checkpoints; `KAIZEN_WORK_DIR`, `HF_HOME`), `/tmp` (caches of torch, triton, matplotlib, `HOME`),
and on GPU pods `/dev/shm` (NCCL and data-loader shared memory). No pod mounts an API token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaizen_api.results import EXIT_USER_ERROR

from kaizen_operator.resolve import CONFIG_DIR, CONFIG_FILE, CONNECTIONS_DIR, ResolvedRun
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads.meta import DISPLAY_NAME_ANNOTATION, run_labels

GPU = "nvidia.com/gpu"
WORK_DIR = "/work"
TMP_DIR = "/tmp"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
TOKEN_KEY = "token"
TOKEN_ENV = "KAIZEN_PROGRESS_TOKEN"
RUNNER = "runner"
TRAIN_ARGS = ("train", "--config", CONFIG_PATH)

CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod_security(settings: OperatorSettings) -> dict[str, Any]:
    uid = settings.pods.run_as_user
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,  # Secret and PVC files readable by the runner
        "fsGroupChangePolicy": "OnRootMismatch",  # no recursive chown of a large PVC on every start
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def env_var(name: str, value: str | int) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


# Where libraries write caches when HOME is read-only: all under the /tmp emptyDir.
_CACHE_ENV = (
    ("HOME", f"{TMP_DIR}/home"),
    ("XDG_CACHE_HOME", f"{TMP_DIR}/cache"),
    ("TORCH_EXTENSIONS_DIR", f"{TMP_DIR}/torch_extensions"),
    ("TRITON_CACHE_DIR", f"{TMP_DIR}/triton"),
    ("MPLCONFIGDIR", f"{TMP_DIR}/matplotlib"),
)


def base_env(settings: OperatorSettings) -> list[dict[str, Any]]:
    env = [
        env_var("PYTHONUNBUFFERED", "1"),
        env_var("KAIZEN_WORK_DIR", WORK_DIR),
        env_var("HF_HOME", f"{WORK_DIR}/hf"),
        env_var("KAIZEN_CONNECTIONS_DIR", CONNECTIONS_DIR),
        *(env_var(name, value) for name, value in _CACHE_ENV),
    ]
    if settings.hf_hub_offline:
        env += [env_var("HF_HUB_OFFLINE", "1"), env_var("HF_DATASETS_OFFLINE", "1")]
    return env


def token_env(secret_name: str) -> dict[str, Any]:
    """The run's progress token, only ever as a secretKeyRef."""
    return {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": TOKEN_KEY}}}


@dataclass(frozen=True)
class PodShape:
    """What differs between the pods of a run: role, command, compute, extra environment."""

    component: str
    args: Sequence[str]
    container_name: str = RUNNER
    gpus: int = 0
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    env: Sequence[dict[str, Any]] = ()
    with_token: bool = True
    read_only_data: bool = False  # mount every PVC read-only (the preflight writes nothing)
    ports: Sequence[dict[str, Any]] = ()
    subdomain: str | None = None


def _resources(shape: PodShape) -> dict[str, Any]:
    requests, limits = dict(shape.requests), dict(shape.limits)
    if shape.gpus > 0:
        requests[GPU] = limits[GPU] = str(shape.gpus)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _read_only(volume: dict[str, Any]) -> dict[str, Any]:
    claim = volume.get("persistentVolumeClaim")
    return {**volume, "persistentVolumeClaim": {**claim, "readOnly": True}} if claim else volume


def pod_volumes(run: ResolvedRun, settings: OperatorSettings, shape: PodShape) -> tuple[list, list]:
    scratch: dict[str, Any] = {}
    if settings.pods.scratch_size_limit:
        scratch["sizeLimit"] = settings.pods.scratch_size_limit
    volumes: list[dict[str, Any]] = [
        {
            "name": "run-config",
            "configMap": {"name": run.names.config_map, "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]},
        },
        {"name": "scratch", "emptyDir": scratch},
        {"name": "tmp", "emptyDir": {}},
        *(_read_only(v) if shape.read_only_data else v for v in run.volumes),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "run-config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "scratch", "mountPath": WORK_DIR},
        {"name": "tmp", "mountPath": TMP_DIR},
        *({**m, "readOnly": True} if shape.read_only_data else m for m in run.volume_mounts),
    ]
    if shape.gpus > 0:
        volumes.append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.pods.shm_size_limit}}
        )
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def container(run: ResolvedRun, settings: OperatorSettings, shape: PodShape, mounts: list) -> dict[str, Any]:
    env = base_env(settings) + list(shape.env)
    if shape.with_token:
        env.append(token_env(run.names.token_secret))
    out: dict[str, Any] = {
        "name": shape.container_name,
        "image": settings.runner_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["kaizen-runner"],
        "args": list(shape.args),
        "env": env,
        "resources": _resources(shape),
        "volumeMounts": mounts,
        "securityContext": dict(CONTAINER_SECURITY),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if shape.ports:
        out["ports"] = list(shape.ports)
    return out


def placement(run: ResolvedRun) -> dict[str, Any]:
    """nodeSelector, tolerations and priorityClassName from spec.resources (GPU pods only)."""
    res = run.spec.resources
    out: dict[str, Any] = {}
    if res.node_selector:
        out["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        out["tolerations"] = [t.to_manifest() for t in res.tolerations]
    if res.priority_class_name:
        out["priorityClassName"] = res.priority_class_name
    return out


def pod_spec_base(settings: OperatorSettings) -> dict[str, Any]:
    """What every Kaizen pod shares, whatever it runs."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(settings),
    }
    if settings.run_service_account:
        spec["serviceAccountName"] = settings.run_service_account
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    return spec


def pod_template(
    run: ResolvedRun, settings: OperatorSettings, shape: PodShape, *, placed: bool = True
) -> dict[str, Any]:
    """A PodTemplateSpec for one pod of `run`; `placed` adds the spec's node selector and tolerations."""
    volumes, mounts = pod_volumes(run, settings, shape)
    spec = {
        **pod_spec_base(settings),
        "containers": [container(run, settings, shape, mounts)],
        "volumes": volumes,
    }
    if placed:
        spec.update(placement(run))
    if shape.subdomain:
        spec["subdomain"] = shape.subdomain
    return {
        "metadata": {
            "labels": run_labels(run.pipeline_name, run.names.run, shape.component),
            "annotations": {DISPLAY_NAME_ANNOTATION: run.config.run_name},
        },
        "spec": spec,
    }


def pod_failure_policy(container_name: str) -> dict[str, Any]:
    """Fail the Job at once on the runner's user-error exit code; evictions and preemptions don't count."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": container_name,
                    "operator": "In",
                    "values": [EXIT_USER_ERROR],
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def compute_requests(run: ResolvedRun) -> tuple[dict[str, str], dict[str, str]]:
    """CPU and memory of a training container: requests as given; memory also as the limit."""
    res = run.spec.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu:
        requests["cpu"] = res.cpu
    if res.memory:
        requests["memory"] = limits["memory"] = res.memory
    return requests, limits
