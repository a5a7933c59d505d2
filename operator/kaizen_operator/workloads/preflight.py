"""The CPU preflight Job: `kaizen-runner plan` on the real dataset before any GPU is requested.

It requests no GPU, ignores the spec's GPU node selector and tolerations (it should not wait for, or
occupy, a GPU node) and carries no Kueue queue label (it must not queue behind GPU workloads) unless
the operator setting `pods.preflight_queue_name` names a (CPU) LocalQueue for preflights. It
mounts what the run mounts, because it reads the same dataset and the base model's tokenizer, but
every volume read-only and without the progress token: it reports through its termination message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaizen_operator.naming import ChildNames
from kaizen_operator.resolve import ResolvedRun
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads.job import job_spec, workload_labels
from kaizen_operator.workloads.meta import DISPLAY_NAME_ANNOTATION, PREFLIGHT, QUEUE_LABEL, object_meta
from kaizen_operator.workloads.pod import CONFIG_PATH, PodShape, pod_template

# Infrastructure failures (a node lost, S3 briefly down) get one more try; bad data fails at once.
PREFLIGHT_BACKOFF_LIMIT = 1


def preflight_args(run: ResolvedRun) -> list[str]:
    args = [
        "plan",
        "--config",
        CONFIG_PATH,
        "--nodes",
        str(run.nodes),
        "--gpus-per-node",
        str(run.gpus_per_node),
    ]
    if run.model.parameters:
        args += ["--parameters", str(run.model.parameters)]
    return args


def build_preflight_job(
    run: ResolvedRun, pipeline: Mapping[str, Any], names: ChildNames, settings: OperatorSettings
) -> dict[str, Any]:
    pods = settings.pods
    shape = PodShape(
        component=PREFLIGHT,
        args=preflight_args(run),
        requests={"cpu": pods.preflight_cpu, "memory": pods.preflight_memory},
        limits={"memory": pods.preflight_memory_limit},
        with_token=False,
        read_only_data=True,
    )
    template = pod_template(run, settings, shape, placed=False)
    labels = workload_labels(run, PREFLIGHT, queued=False)
    if pods.preflight_queue_name:
        labels[QUEUE_LABEL] = pods.preflight_queue_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(
            names.preflight_job, pipeline, labels, {DISPLAY_NAME_ANNOTATION: run.config.run_name}
        ),
        "spec": job_spec(
            template,
            backoff_limit=PREFLIGHT_BACKOFF_LIMIT,
            active_deadline_seconds=pods.preflight_active_deadline_seconds,
            settings=settings,
            suspend=bool(pods.preflight_queue_name),
        ),
    }
