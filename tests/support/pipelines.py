"""Objects the operator tests build on: example pipelines and PrivateModels as the API server stores them,
and their resolved runs."""

from __future__ import annotations

import copy
from typing import Any

from api.manifests import apply, load_example
from kaizen_operator.catalog import load_catalog
from kaizen_operator.resolve import ResolvedRun, resolve_train_run
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads import (
    build_config_map,
    build_cronjob,
    build_preflight_job,
    build_token_secret,
    build_workload,
)

NAMESPACE = "team-a"
UID = "0b6e0d5c-2f7e-4f43-9a59-6f1d9b5a7c11"
VERSION = "ft_Qwen2.5-0.5B-Instruct_20250508124054"
SETTINGS = OperatorSettings(progress_url="http://kaizen-operator.kaizen-system.svc:8081")
CATALOG = load_catalog()
DISPLAY = "ft_Qwen2.5-0.5B-Instruct_20260101120000"
MULTI = "finetune-sft-sharegpt-private.yaml"  # 2 nodes x 8 GPUs, queue team-a, node selector, toleration


def pipeline(example: str = "finetune-sft-alpaca.yaml", changes: dict[str, Any] | None = None) -> dict:
    doc = apply(load_example(example), changes or {})
    doc["metadata"] = {
        **doc["metadata"],
        "namespace": NAMESPACE,
        "uid": UID,
        "generation": 1,
        "labels": {"team": "nlp", "app.kubernetes.io/name": "mine", "kueue.x-k8s.io/queue-name": "other"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    }
    return doc


def private_model(ready: bool = True, storage: dict | None = None, **status: Any) -> dict:
    doc = copy.deepcopy(load_example("privatemodel.yaml"))
    if storage is not None:
        doc["spec"]["storage"] = storage
    doc["metadata"]["namespace"] = NAMESPACE
    doc["status"] = {
        "latestVersion": VERSION if ready else None,
        "versions": [
            {
                "index": 0,
                "name": VERSION,
                "status": "ready" if ready else "training",
                "ready": ready,
                "tags": {"type": "LLM", "size": "0.5B"},
            },
        ],
        **status,
    }
    return doc


def models(**kw: Any) -> dict[str, dict]:
    return {"support-assistant": private_model(**kw)}


def resolved(
    example: str = "finetune-sft-alpaca.yaml", changes: dict | None = None, **kw: Any
) -> ResolvedRun:
    return resolve_train_run(pipeline(example, changes), DISPLAY, CATALOG, models(**kw), SETTINGS)


def everything(example: str = MULTI, *, pytorchjob: bool = True, **changes: Any) -> list[dict[str, Any]]:
    """Every child the operator builds for a run of `example`, with the CronJob of a schedule."""
    run = resolved(example, changes or None)
    doc = pipeline(example, changes or None)
    objects = [
        build_config_map(run, doc, run.names),
        build_token_secret(run.names, doc, "tok-123"),
        build_preflight_job(run, doc, run.names, SETTINGS),
        *build_workload(run, doc, run.names, SETTINGS, pytorchjob_available=pytorchjob),
    ]
    if doc["spec"].get("trigger", {}).get("type") == "schedule":
        objects.append(build_cronjob(doc, SETTINGS))
    return objects
