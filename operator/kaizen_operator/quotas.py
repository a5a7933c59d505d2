"""Per-namespace caps from the operator settings: pipelines, concurrent runs, nodes per run.

A pipeline over a cap gets Ready=False with reason QuotaExceeded and nothing is created for it. The
pipeline cap is by age (the oldest pipelines of the namespace keep running), so it is level-based:
deleting an older pipeline frees a place for the next one. Two pipelines starting runs in the same
instant may both see room for one more run; the cap can then be passed by one.
"""

from __future__ import annotations

from typing import Any

from kaizen_api.finetune import FineTunePipelineSpec

from kaizen_operator.kube import Kube, path_of
from kaizen_operator.pipeline_status import Blocker
from kaizen_operator.settings import Quotas

API = "kaizen.dev/v1alpha1"
KIND = "FineTunePipeline"


def pipeline_blocker(
    kube: Kube, pipeline: dict[str, Any], spec: FineTunePipelineSpec, quotas: Quotas
) -> Blocker | None:
    nodes = spec.resources.nodes
    if quotas.max_nodes_per_run is not None and nodes > quotas.max_nodes_per_run:
        return Blocker(
            "QuotaExceeded",
            f"spec.resources.nodes is {nodes}; the namespace allows {quotas.max_nodes_per_run} per run",
        )
    if quotas.max_pipelines is None:
        return None
    meta = pipeline["metadata"]
    items = kube.list(path_of(API, KIND, meta["namespace"]), metadata_only=True)
    order = sorted((i["metadata"]["creationTimestamp"], i["metadata"]["name"]) for i in items)
    position = order.index((meta["creationTimestamp"], meta["name"])) if items else 0
    if position >= quotas.max_pipelines:
        return Blocker(
            "QuotaExceeded",
            f"this namespace allows {quotas.max_pipelines} FineTunePipelines; {len(order)} exist "
            "and this one is not among the oldest",
        )
    return None


def active_runs(pipeline: dict[str, Any]) -> int:
    runs = (pipeline.get("status") or {}).get("runs") or []
    return sum(1 for r in runs if r.get("phase") in ("Pending", "Running") and r.get("objectName"))


def concurrent_runs_blocker(kube: Kube, namespace: str, quotas: Quotas) -> Blocker | None:
    cap = quotas.max_concurrent_runs
    if cap is None:
        return None
    active = sum(active_runs(p) for p in kube.list(path_of(API, KIND, namespace)))
    if active >= cap:
        return Blocker(
            "QuotaExceeded",
            f"{active} runs are active in this namespace, which allows {cap} at once; "
            "the run starts when one ends",
        )
    return None
