"""Multi-node backend: a Kubeflow PyTorchJob (kubeflow.org/v1), Master + Workers.

The training operator injects MASTER_ADDR/MASTER_PORT and torchrun's PET_NNODES, PET_NODE_RANK and
PET_NPROC_PER_NODE (from the integer `nprocPerNode`) into the container that must be named
`pytorch`; the runner re-executes itself under torchrun with them. `restartPolicy: ExitCode`
treats exit codes 1-127 (the runner's user error among them) as permanent and 128-255 (signals:
preemption, OOM kill) as retryable, up to `runPolicy.backoffLimit`; `cleanPodPolicy: Running`
frees the other nodes' GPUs as soon as the job ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaizen_operator.naming import ChildNames
from kaizen_operator.resolve import ResolvedRun
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads.job import train_shape, workload_labels
from kaizen_operator.workloads.meta import DISPLAY_NAME_ANNOTATION, object_meta
from kaizen_operator.workloads.pod import pod_template

KIND = "PyTorchJob"
API_VERSION = "kubeflow.org/v1"
CRD_NAME = "pytorchjobs.kubeflow.org"
CONTAINER = "pytorch"
PORT = 23456  # the training operator's default, named pytorchjob-port


def _replica(template: dict[str, Any], replicas: int) -> dict[str, Any]:
    return {"replicas": replicas, "restartPolicy": "ExitCode", "template": template}


def build_pytorchjob(
    run: ResolvedRun, pipeline: Mapping[str, Any], names: ChildNames, settings: OperatorSettings
) -> list[dict[str, Any]]:
    shape = train_shape(
        run, container_name=CONTAINER, env=(), ports=({"name": "pytorchjob-port", "containerPort": PORT},)
    )
    template = pod_template(run, settings, shape)
    run_policy: dict[str, Any] = {"cleanPodPolicy": "Running", "backoffLimit": settings.backoff_limit}
    if run.spec.active_deadline_seconds:
        run_policy["activeDeadlineSeconds"] = run.spec.active_deadline_seconds
    if settings.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    if run.spec.resources.queue_name:
        run_policy["suspend"] = True
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": object_meta(
                names.job, pipeline, workload_labels(run), {DISPLAY_NAME_ANNOTATION: run.config.run_name}
            ),
            "spec": {
                "nprocPerNode": str(max(1, run.gpus_per_node)),
                "runPolicy": run_policy,
                "pytorchReplicaSpecs": {
                    "Master": _replica(template, 1),
                    "Worker": _replica(template, run.nodes - 1),
                },
            },
        }
    ]
