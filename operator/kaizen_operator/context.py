"""The operator's shared state for FineTunePipelines, and the one writer of a pipeline's status.

Every reconcile pass, the progress endpoint and the EvalJob controller share one Context; a status
write goes through `patch_status`, so the watch cache learns of the operator's own writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaizen_api.base import API_VERSION as API
from kaizen_api.kinds import FINETUNE_PIPELINE

from kaizen_operator.catalog import Catalog
from kaizen_operator.kube import ApiError, Kube, path_of
from kaizen_operator.metrics import STATUS_PATCHES, RunPhases
from kaizen_operator.progress import RateLimiter
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.watchcache import WatchCache

KIND = FINETUNE_PIPELINE.kind


@dataclass
class Context:
    kube: Kube
    settings: OperatorSettings
    catalog: Catalog
    key: bytes
    phases: RunPhases = field(default_factory=RunPhases)
    # (namespace, run object name) -> (pipeline name, uid), for the progress endpoint; active runs only.
    run_index: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # The endpoint's reads of token Secrets (runs not in run_index, every eval run), all runs together:
    # they come before the token can be checked, so requests for made-up runs cost at most 20 a second.
    secret_reads: RateLimiter = field(default_factory=lambda: RateLimiter(interval_s=0.05, burst=40))
    # Pipelines and PrivateModels as the watches delivered them; the operator's own status writes.
    pipelines: WatchCache = field(default_factory=WatchCache)
    models: WatchCache = field(default_factory=WatchCache)

    def forget(self, key: tuple[str, str]) -> None:
        """The pipeline is gone: out of the cache, the run metrics and the progress endpoint's index."""
        self.phases.forget(key)
        self.pipelines.deleted(key)
        for run_key in [k for k, v in self.run_index.items() if k[0] == key[0] and v[0] == key[1]]:
            self.run_index.pop(run_key, None)

    def remember(self, key: tuple[str, str], uid: str, runs: list[dict[str, Any]]) -> None:
        """The pipeline's runs as its status now records them, for the metrics and the endpoint."""
        self.phases.set(key, [r["phase"] for r in runs])
        for run in runs:
            run_key = (key[0], run.get("objectName") or "")
            if run.get("phase") in ("Pending", "Running") and run.get("objectName"):
                self.run_index[run_key] = (key[1], uid)
            else:
                self.run_index.pop(run_key, None)


class Conflict(Exception):
    """The pipeline changed while this pass worked (or is gone): run again from a fresh read."""


def same_object(known: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether `current` (read from the API server, None when absent) is the object `known` was read
    from: not deleted since, nor deleted and created again under its name."""
    return current is not None and current["metadata"].get("uid") == known["metadata"].get("uid")


def confirm(ctx: Context, pipeline: dict[str, Any], models: dict[str, dict[str, Any]]) -> None:
    """Before a pass creates a child that outlives it: the pipeline and the PrivateModels it read,
    perhaps from the watch caches, still exist. A watch restart never reports the deletions made during
    its gap, so a cached object may be gone; a child of a pipeline gone is garbage-collected, and that
    deletion's event would start the same pass again, for ever. What is gone is dropped from its cache
    and the pass runs again (`Conflict`), from the API server's answer."""
    ns = pipeline["metadata"]["namespace"]
    reads = [(ctx.pipelines, KIND, pipeline), *((ctx.models, "PrivateModel", m) for m in models.values())]
    for cache, kind, known in reads:
        name = known["metadata"]["name"]
        if not same_object(known, ctx.kube.get(path_of(API, kind, ns, name))):
            cache.deleted((ns, name))
            raise Conflict()


def patch_status(ctx: Context, pipeline: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch status with the resourceVersion read, so a concurrent writer makes this a Conflict.
    A pipeline not found is gone (its deletion may never have been reported, see `confirm`): dropped
    from the cache, and the pass runs again from the API server's answer.

    The new resourceVersion is remembered: the watch event this write causes needs no reconcile."""
    meta = pipeline["metadata"]
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
    try:
        patched = ctx.kube.merge_patch(path_of(API, KIND, meta["namespace"], meta["name"]) + "/status", body)
    except ApiError as err:
        if err.status == 404:
            ctx.pipelines.deleted((meta["namespace"], meta["name"]))
            raise Conflict() from None
        if err.status == 409:
            ctx.pipelines.invalidate((meta["namespace"], meta["name"]))
            raise Conflict() from None
        raise
    STATUS_PATCHES.labels(KIND).inc()
    ctx.pipelines.wrote((meta["namespace"], meta["name"]), patched)
    return patched
