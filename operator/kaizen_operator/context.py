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


class Conflict(Exception):
    """The pipeline changed while this pass worked: run again from a fresh read."""


def patch_status(ctx: Context, pipeline: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch status with the resourceVersion read, so a concurrent writer makes this a Conflict.

    The new resourceVersion is remembered: the watch event this write causes needs no reconcile."""
    meta = pipeline["metadata"]
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
    try:
        patched = ctx.kube.merge_patch(path_of(API, KIND, meta["namespace"], meta["name"]) + "/status", body)
    except ApiError as err:
        if err.status == 409:
            ctx.pipelines.invalidate((meta["namespace"], meta["name"]))
            raise Conflict() from None
        raise
    STATUS_PATCHES.labels(KIND).inc()
    ctx.pipelines.wrote((meta["namespace"], meta["name"]), patched)
    return patched
