"""Single-node runs: one batch/v1 Job, and the Job settings every Kaizen Job shares.

Retries: `backoffLimit` from the operator settings, with a `podFailurePolicy` that fails the Job
at once on the runner's user-error exit code and does not count disruptions (preemption,
eviction, node drain). Kueue: with `spec.resources.queueName` the Job carries the queue label and
is created suspended, for Kueue to admit; the operator never changes `suspend` afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaizen_operator.naming import ChildNames
from kaizen_operator.resolve import ResolvedRun
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads.meta import (
    DISPLAY_NAME_ANNOTATION,
    QUEUE_LABEL,
    TRAIN,
    object_meta,
    run_labels,
)
from kaizen_operator.workloads.pod import (
    RUNNER,
    TRAIN_ARGS,
    PodShape,
    compute_requests,
    env_var,
    pod_failure_policy,
    pod_template,
)


def workload_labels(run: ResolvedRun, component: str = TRAIN, *, queued: bool = True) -> dict[str, str]:
    labels = run_labels(run.pipeline_name, run.names.run, component)
    if queued and run.spec.resources.queue_name:
        labels[QUEUE_LABEL] = run.spec.resources.queue_name
    return labels


def job_spec(
    template: dict[str, Any],
    *,
    backoff_limit: int,
    active_deadline_seconds: int | None,
    settings: OperatorSettings,
    container_name: str = RUNNER,
    suspend: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "podFailurePolicy": pod_failure_policy(container_name),
        "template": template,
    }
    if active_deadline_seconds:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    if settings.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    if suspend:
        spec["suspend"] = True
    return spec


def train_shape(run: ResolvedRun, **changes: Any) -> PodShape:
    """The training container of one node; more than one GPU starts torchrun inside the pod."""
    requests, limits = compute_requests(run)
    gpus = run.gpus_per_node
    env = [env_var("PET_NPROC_PER_NODE", max(1, gpus))]
    values: dict[str, Any] = {
        "component": TRAIN,
        "args": TRAIN_ARGS,
        "gpus": gpus,
        "requests": requests,
        "limits": limits,
        "env": env,
    }
    values.update(changes)
    return PodShape(**values)


def build_job(
    run: ResolvedRun, pipeline: Mapping[str, Any], names: ChildNames, settings: OperatorSettings
) -> dict[str, Any]:
    """The GPU workload of a single-node run."""
    template = pod_template(run, settings, train_shape(run))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(
            names.job, pipeline, workload_labels(run), {DISPLAY_NAME_ANNOTATION: run.config.run_name}
        ),
        "spec": job_spec(
            template,
            backoff_limit=settings.backoff_limit,
            active_deadline_seconds=run.spec.active_deadline_seconds,
            settings=settings,
            suspend=bool(run.spec.resources.queue_name),
        ),
    }
