"""Quota arithmetic: the oldest pipelines keep their place, active runs count across the namespace."""

from __future__ import annotations

from typing import Any

from api.cases import load_example
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_operator.quotas import concurrent_runs_blocker, pipeline_blocker
from kaizen_operator.settings import Quotas


class Listing:
    """Stands in for Kube.list: the quota code reads nothing else."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def list(
        self, path: str, selector: str | None = None, metadata_only: bool = False
    ) -> list[dict[str, Any]]:
        return self.items


def pipeline(name: str, created: str, *phases: str) -> dict[str, Any]:
    runs = [{"name": f"r{i}", "objectName": f"o{i}", "phase": p} for i, p in enumerate(phases)]
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "status": {"runs": runs},
    }


SPEC = FineTunePipelineSpec.model_validate(load_example("finetune-sft-alpaca.yaml")["spec"])


def test_pipeline_cap_is_by_age() -> None:
    items = [pipeline("b", "2026-01-02T00:00:00Z"), pipeline("a", "2026-01-01T00:00:00Z")]
    quotas = Quotas(max_pipelines=1)
    assert pipeline_blocker(Listing(items), items[1], SPEC, quotas) is None  # type: ignore[arg-type]
    blocked = pipeline_blocker(Listing(items), items[0], SPEC, quotas)  # type: ignore[arg-type]
    assert blocked is not None and blocked.reason == "QuotaExceeded"


def test_nodes_per_run() -> None:
    spec = SPEC.model_copy(update={"resources": SPEC.resources.model_copy(update={"nodes": 3})})
    blocked = pipeline_blocker(Listing([]), pipeline("a", "x"), spec, Quotas(max_nodes_per_run=2))  # type: ignore[arg-type]
    assert blocked is not None and "nodes" in blocked.message


def test_concurrent_runs_count_across_pipelines() -> None:
    items = [pipeline("a", "x", "Running", "Succeeded"), pipeline("b", "y", "Pending")]
    assert concurrent_runs_blocker(Listing(items), "ns", Quotas(max_concurrent_runs=3)) is None  # type: ignore[arg-type]
    blocked = concurrent_runs_blocker(Listing(items), "ns", Quotas(max_concurrent_runs=2))  # type: ignore[arg-type]
    assert blocked is not None and blocked.reason == "QuotaExceeded"
    assert concurrent_runs_blocker(Listing(items), "ns", Quotas()) is None  # type: ignore[arg-type]
