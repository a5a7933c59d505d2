"""A scheduled pipeline's CronJob: each firing creates a tiny CPU-only "trigger" Job, a run request.

The trigger pod does nothing (`true`) and can do nothing: no API token, no Secrets, no volumes.
A trigger Job is owned by the CronJob: it names its pipeline in full in an annotation (the label,
kept for selection, is cut and hashed for a name over 63 characters).
The Job's existence is the request; the operator turns it into a run named from its
`batch.kubernetes.io/cronjob-scheduled-timestamp` annotation (or records the firing as skipped), so
scheduled runs get the same preflight, queue and backends as manual ones. The CronJob itself
allows concurrent firings (the operator enforces the pipeline's Forbid/Allow/Replace, recording a
skipped firing in the run history instead of dropping it), and `startingDeadlineSeconds` bounds
catch-up after the controller was down to one missed firing within five minutes.

OPTIONAL: a field the CronJob may lack (`timeZone`, the trigger Job's `ttlSecondsAfterFinished`, the
pod's `imagePullSecrets`) is rendered None when unset, not left out: the operator merge-patches the
CronJob with its spec, and only a null removes what an earlier spec or setting put there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaizen_operator.naming import cronjob_name
from kaizen_operator.resolve import parse_spec
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads.meta import (
    PIPELINE_NAME_ANNOTATION,
    TRIGGER,
    TRIGGER_LABEL,
    object_meta,
    pipeline_labels,
)
from kaizen_operator.workloads.pod import CONTAINER_SECURITY, pod_spec_base

STARTING_DEADLINE_SECONDS = 300
TRIGGER_DEADLINE_SECONDS = 300
SCHEDULE = "schedule"


def trigger_labels(pipeline_name: str) -> dict[str, str]:
    return {**pipeline_labels(pipeline_name, TRIGGER), TRIGGER_LABEL: SCHEDULE}


def _trigger_pod(settings: OperatorSettings, labels: dict[str, str]) -> dict[str, Any]:
    pods = settings.pods
    resources = {"cpu": pods.trigger_cpu, "memory": pods.trigger_memory}
    spec = {"imagePullSecrets": None} | pod_spec_base(settings)  # None: see OPTIONAL
    spec.pop("serviceAccountName", None)  # the default ServiceAccount, whose token is not mounted
    spec["containers"] = [
        {
            "name": TRIGGER,
            "image": settings.runner_image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": ["true"],
            "resources": {"requests": resources, "limits": resources},
            "securityContext": dict(CONTAINER_SECURITY),
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    ]
    return {"metadata": {"labels": labels}, "spec": spec}


def build_cronjob(pipeline: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    name = pipeline["metadata"]["name"]
    trigger = parse_spec(pipeline).trigger
    if trigger.type != SCHEDULE or trigger.schedule is None:
        raise ValueError(f"pipeline {name} has no schedule")
    labels = trigger_labels(name)
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": TRIGGER_DEADLINE_SECONDS,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "template": _trigger_pod(settings, labels),
    }
    spec: dict[str, Any] = {
        "schedule": trigger.schedule,
        "timeZone": trigger.time_zone,
        "suspend": trigger.suspend,
        "concurrencyPolicy": "Allow",
        "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": labels, "annotations": {PIPELINE_NAME_ANNOTATION: name}},
            "spec": job_spec,
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": object_meta(cronjob_name(name), pipeline, labels),
        "spec": spec,
    }
