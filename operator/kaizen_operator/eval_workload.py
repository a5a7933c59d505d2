"""Pure builders of an evaluation run's children: its ConfigMap (eval.json), token Secret and Job.

The pod is the training runs' pod (`workloads.pod`: restricted security, read-only root, scratch
emptyDirs, GPUs, placement, connection and PVC mounts, progress token from a Secret) and the Job has
their retry policy, deadline, TTL and Kueue handling (`workloads.job.job_spec`); only the labels
(`kaizen.dev/evaljob`), the owner (the EvalJob) and the command (`kaizen-runner eval`) differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from kaizen_api.base import API_VERSION
from kaizen_api.kinds import EVAL_JOB

from kaizen_operator.eval_resolve import API_KEY_ENV, ResolvedEval
from kaizen_operator.naming import label_value
from kaizen_operator.resolve import CONFIG_DIR, CONFIG_FILE
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads.job import job_spec
from kaizen_operator.workloads.meta import (
    COMPONENT_LABEL,
    DISPLAY_NAME_ANNOTATION,
    MANAGED_BY,
    MANAGER,
    QUEUE_LABEL,
    RUN_LABEL,
)
from kaizen_operator.workloads.pod import (
    RUNNER,
    TOKEN_KEY,
    PodShape,
    compute_requests,
    container,
    placement,
    pod_spec_base,
    pod_volumes,
)

EVALJOB_LABEL = "kaizen.dev/evaljob"
# `<PrivateModel>/<version>` the Job evaluates: the run's scores go there, even when a newer version
# is the newest by the time it ends (a spec without a version, a pipelineRun without a run).
EVALUATED_ANNOTATION = "kaizen.dev/evaluated-version"
EVAL = "eval"
EVAL_ARGS = ("eval", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}")


def eval_labels(job_name: str, run_object_name: str, component: str = EVAL) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        EVALJOB_LABEL: label_value(job_name),
        COMPONENT_LABEL: component,
        RUN_LABEL: run_object_name,
    }


def _meta(name: str, job: Mapping[str, Any], labels: dict[str, str], run: ResolvedEval) -> dict[str, Any]:
    owner = job["metadata"]
    return {
        "name": name,
        "namespace": owner["namespace"],
        "labels": labels,
        "annotations": {DISPLAY_NAME_ANNOTATION: run.config.run_name},
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": EVAL_JOB.kind,
                "name": owner["name"],
                "uid": owner["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def build_eval_config_map(run: ResolvedEval, job: Mapping[str, Any]) -> dict[str, Any]:
    labels = eval_labels(run.job_name, run.names.run, "config")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(run.names.config_map, job, labels, run),
        "data": {CONFIG_FILE: run.config_json},
    }


def build_eval_token_secret(run: ResolvedEval, job: Mapping[str, Any], token: str) -> dict[str, Any]:
    labels = eval_labels(run.job_name, run.names.run, "token")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(run.names.token_secret, job, labels, run),
        "stringData": {TOKEN_KEY: token},
    }


def build_eval_job(run: ResolvedEval, job: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The Job running `kaizen-runner eval` for one run."""
    as_run = cast(Any, run)  # the pod builders read names, volumes, volume_mounts and spec.resources
    requests, limits = compute_requests(as_run)
    env: list[dict[str, Any]] = [{"name": "HF_DATASETS_OFFLINE", "value": "1"}]
    if run.api_key_secret:
        key_ref = {"secretKeyRef": {"name": run.api_key_secret, "key": API_KEY_ENV}}
        env.append({"name": API_KEY_ENV, "valueFrom": key_ref})
    shape = PodShape(
        component=EVAL,
        args=EVAL_ARGS,
        gpus=0 if run.config.model is None or run.config.model.endpoint else run.spec.resources.gpus_per_node,
        requests=requests,
        limits=limits,
        env=env,
    )
    volumes, mounts = pod_volumes(as_run, settings, shape)
    spec = {
        **pod_spec_base(settings),
        "containers": [container(as_run, settings, shape, mounts)],
        "volumes": volumes,
        **(placement(as_run) if shape.gpus else {}),
    }
    labels = eval_labels(run.job_name, run.names.run)
    template = {
        "metadata": {"labels": dict(labels), "annotations": {DISPLAY_NAME_ANNOTATION: run.config.run_name}},
        "spec": spec,
    }
    queue = run.spec.resources.queue_name
    if queue:
        labels[QUEUE_LABEL] = queue
    meta = _meta(run.names.job, job, labels, run)
    if run.private_model is not None:
        meta["annotations"][EVALUATED_ANNOTATION] = "/".join(run.private_model)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": job_spec(
            template,
            backoff_limit=settings.backoff_limit,
            active_deadline_seconds=run.spec.active_deadline_seconds,
            settings=settings,
            container_name=RUNNER,
            suspend=bool(queue),
        ),
    }
