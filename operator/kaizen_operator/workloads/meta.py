"""Metadata every child carries: Kaizen's own labels (never the CR's), an owner reference, the run's name.

Labels come from a fixed set, so a user's labels on the pipeline (or one that mimics
`kueue.x-k8s.io/queue-name`) never leak onto workloads; the queue label comes from
`spec.resources.queueName` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaizen_api.base import API_VERSION
from kaizen_api.kinds import FINETUNE_PIPELINE

from kaizen_operator.naming import label_value

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kaizen"
PIPELINE_LABEL = "kaizen.dev/pipeline"
RUN_LABEL = "kaizen.dev/run"
COMPONENT_LABEL = "kaizen.dev/component"
TRIGGER_LABEL = "kaizen.dev/trigger"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
DISPLAY_NAME_ANNOTATION = "kaizen.dev/run-display-name"
# The pipeline's full name on a schedule's trigger Jobs, whose owner is the CronJob and whose
# pipeline label is cut and hashed for a name over 63 characters.
PIPELINE_NAME_ANNOTATION = "kaizen.dev/pipeline-name"

# What each child is: selectors tell a run's preflight pod from its training pods.
PREFLIGHT, TRAIN, CONFIG, TRIGGER = "preflight", "train", "config", "trigger"


def owner_reference(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    meta = pipeline["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": FINETUNE_PIPELINE.kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pipeline_of(meta: Mapping[str, Any]) -> str | None:
    """The name of the pipeline a child belongs to: its owner; for a trigger Job (owned by the
    CronJob) the annotation, else (a trigger Job made before the annotation was) the label."""
    owners = [r["name"] for r in meta.get("ownerReferences") or [] if r.get("kind") == FINETUNE_PIPELINE.kind]
    if owners:
        return str(owners[0])
    named = (meta.get("annotations") or {}).get(PIPELINE_NAME_ANNOTATION)
    return named or (meta.get("labels") or {}).get(PIPELINE_LABEL)


def pipeline_labels(pipeline_name: str, component: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        PIPELINE_LABEL: label_value(pipeline_name),
        COMPONENT_LABEL: component,
    }


def run_labels(pipeline_name: str, run_object_name: str, component: str) -> dict[str, str]:
    return {**pipeline_labels(pipeline_name, component), RUN_LABEL: run_object_name}


def object_meta(
    name: str,
    pipeline: Mapping[str, Any],
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": pipeline["metadata"]["namespace"],
        "labels": dict(labels),
        "ownerReferences": [owner_reference(pipeline)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
