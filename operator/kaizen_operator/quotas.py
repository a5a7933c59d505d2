"""Per-namespace caps from the operator settings: pipelines, concurrent runs, nodes per run.

A pipeline over a cap gets Ready=False with reason QuotaExceeded and nothing is created for it. The
pipeline cap is by age (the oldest pipelines of the namespace keep running). Both caps count from
the operator's watch cache, so a pass costs no request; a pass LISTs the namespace only before kopf's
initial listing is in, and to confirm a count that would block it (the cache may hold pipelines
deleted while a watch restarted, see watchcache). That LIST serves the namespace's other blocked
passes for `CONFIRMED_S`, unless the watch lists again meanwhile: a namespace of many blocked
pipelines costs one LIST per wake or restart, not one per pipeline.

The caps stay level-based without timers on idle pipelines: on every change of a namespace's
pipelines (a deletion, a run that ended) the pipeline watch asks `to_wake` which blocked pipelines
may pass now, and enqueues them. A watch restart's listing reports no deletion made in its gap: a
listing event of a blocked pipeline has `relisted_wake` confirm the namespace's count with one LIST
(which drops the deleted pipelines from the cache), then ask `to_wake`.

Passes of one namespace run at once (the work queue's workers; every pipeline at startup). A pass that
may start a run under the concurrent-runs cap counts holding the namespace's `WatchCache.deciding`
lock, and the runs it records stay reserved in the cache, counting as active, until its status write
enters the cache (or the pass ends without one): no two passes take the same free slot. A reserved run
counts once, whether or not the body counted already holds it (the watch may deliver the write before
its pass handles the answer; a LIST may see it). The lock is held for the count only, by such passes
only; with no cap set nothing is taken.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kaizen_api.base import API_VERSION as API
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import RunStatus
from kaizen_api.kinds import FINETUNE_PIPELINE

from kaizen_operator.kube import Kube, path_of
from kaizen_operator.pipeline_status import Blocker
from kaizen_operator.settings import Quotas
from kaizen_operator.watchcache import WatchCache

KIND = FINETUNE_PIPELINE.kind
REASON = "QuotaExceeded"
RUN_WAIT = "the run starts when one ends"  # ends the concurrent-runs message; `to_wake` looks for it
# A pipeline waiting for a run slot is woken when one frees; this bounds the wait should that wake
# not start it (e.g. an older waiter, woken first, keeps failing its passes).
WAIT_FALLBACK_S = 120.0
CONFIRMED_S = 10.0  # how long one LIST vouches for a namespace's cached count (see WatchCache.confirmed)
# The runs other passes have recorded and not yet written: object names, by pipeline name.
Reserved = Mapping[str, frozenset[str]]
# Whether these other pipelines, with the runs their passes have reserved, block this one.
Count = Callable[[list[dict[str, Any]], Reserved], bool]


def _age(pipeline: dict[str, Any]) -> tuple[str, str]:
    meta = pipeline["metadata"]
    return meta["creationTimestamp"], meta["name"]


def _others(
    cache: WatchCache, kube: Kube, pipeline: dict[str, Any], blocks: Count, *, metadata_only: bool
) -> tuple[list[dict[str, Any]], Reserved] | None:
    """The namespace's other pipelines and the runs their passes have reserved (see
    `concurrent_runs_blocker`) when `blocks` says they block this one, else None. Counted from
    the watch cache, whose count is confirmed by a LIST before it blocks (or LISTed outright before
    the watch's initial listing is in): a watch restart never reports the deletions made during its
    gap, and a pipeline gone would be counted, with its active runs, for ever. The LIST drops such
    pipelines from the cache, and vouches for it to the namespace's passes that block next."""
    namespace, name = pipeline["metadata"]["namespace"], pipeline["metadata"]["name"]
    items, reserved = cache.counted(namespace, name)
    if items is None:  # reservations read before the LIST: one that ends during it has its runs in it
        items = _listed(cache, kube, namespace, metadata_only)
    elif blocks(_without(items, name), reserved):
        _confirm(cache, kube, namespace)
        items, reserved = cache.counted(namespace, name)
    others = _without(items or [], name)
    return (others, reserved) if blocks(others, reserved) else None


def _listed(cache: WatchCache, kube: Kube, namespace: str, metadata_only: bool) -> list[dict[str, Any]]:
    """The namespace's pipelines as the API server lists them; those the cache holds and the LIST
    lacks are dropped from the cache, which the LIST then confirms."""
    mark, before = cache.mark(namespace), cache.versions(namespace)
    items = kube.list(path_of(API, KIND, namespace), metadata_only=metadata_only)
    cache.absent(namespace, before, {i["metadata"]["name"] for i in items})
    cache.confirm(namespace, mark)
    return items


def _confirm(cache: WatchCache, kube: Kube, namespace: str) -> None:
    """LIST the namespace unless a LIST confirmed its cached pipelines in the last `CONFIRMED_S` and no
    listing event came since; callers at once share the LIST of the first."""
    with cache.confirming(namespace):
        if not cache.confirmed(namespace, CONFIRMED_S):
            _listed(cache, kube, namespace, metadata_only=True)  # names are all it needs


def _without(items: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [i for i in items if i["metadata"]["name"] != name]


def older(others: list[dict[str, Any]], pipeline: dict[str, Any]) -> int:
    """How many of the namespace's other pipelines were created before this one (the older keep their
    place under the pipeline cap)."""
    mine = _age(pipeline)
    return sum(1 for other in others if _age(other) < mine)


def pipeline_blocker(
    cache: WatchCache, kube: Kube, pipeline: dict[str, Any], spec: FineTunePipelineSpec, quotas: Quotas
) -> Blocker | None:
    nodes = spec.resources.nodes
    if quotas.max_nodes_per_run is not None and nodes > quotas.max_nodes_per_run:
        allowed = quotas.max_nodes_per_run
        return Blocker(REASON, f"spec.resources.nodes is {nodes}; the namespace allows {allowed} per run")
    cap = quotas.max_pipelines
    if cap is None:
        return None
    found = _others(cache, kube, pipeline, lambda o, _: older(o, pipeline) >= cap, metadata_only=True)
    if found is None:
        return None
    return Blocker(
        REASON,
        f"this namespace allows {cap} FineTunePipelines; {len(found[0]) + 1} exist "
        "and this one is not among the oldest",
    )


def _active(pipeline: Mapping[str, Any] | None) -> list[str]:
    """The object names of the pipeline's active runs, as its body records them."""
    runs = ((pipeline or {}).get("status") or {}).get("runs") or []
    return [r["objectName"] for r in runs if r.get("phase") in ("Pending", "Running") and r.get("objectName")]


def active_runs(pipeline: dict[str, Any]) -> int:
    return len(_active(pipeline))


def _reserved_runs(others: list[dict[str, Any]], reserved: Reserved) -> int:
    """The reserved runs that the bodies counted do not hold yet."""
    bodies = {p["metadata"]["name"]: p for p in others}
    return sum(len(runs.difference(_active(bodies.get(name)))) for name, runs in reserved.items())


def concurrent_runs_blocker(
    cache: WatchCache, kube: Kube, pipeline: dict[str, Any], runs: list[RunStatus], quotas: Quotas
) -> Blocker | None:
    """The other pipelines' active runs as last seen, this one's as the pass has them (runs it has
    just recorded count too), and the runs other passes have recorded but not yet written: a pass
    that starts runs counts under `WatchCache.deciding` and then `reserve`s them, so passes of the
    namespace deciding at once (several workers, every pipeline at startup) never share a slot."""
    cap = quotas.max_concurrent_runs
    if cap is None:
        return None
    mine = sum(1 for r in runs if not r.finished and r.object_name)

    def count(others: list[dict[str, Any]], reserved: Reserved) -> int:
        return sum(active_runs(p) for p in others) + _reserved_runs(others, reserved) + mine

    found = _others(cache, kube, pipeline, lambda o, r: count(o, r) >= cap, metadata_only=False)
    if found is None:
        return None
    return Blocker(
        REASON, f"{count(*found)} runs are active in this namespace, which allows {cap} at once; {RUN_WAIT}"
    )


def relisted_wake(cache: WatchCache, kube: Kube, namespace: str, quotas: Quotas) -> list[str]:
    """`to_wake` after a watch listing delivered a blocked pipeline of the namespace. The listing may
    follow a restart whose gap hid deletions, and the blocked pipeline's newest version may be the
    operator's own write (no pass): the cache still counts the deleted, so its count is LISTed first,
    unless a LIST confirmed it since the last listing event."""
    _confirm(cache, kube, namespace)
    return to_wake(cache.in_namespace(namespace) or [], quotas)


def waiting(pipeline: dict[str, Any], quotas: Quotas) -> bool:
    """Whether a namespace cap blocks the pipeline, as its Ready condition says, and not the nodes cap
    (which only the pipeline's own change lifts)."""
    return _quota_message(pipeline) is not None and _nodes_fit(pipeline, quotas)


def _quota_message(pipeline: dict[str, Any]) -> str | None:
    """The message of a Ready=False/QuotaExceeded condition, else None."""
    for condition in (pipeline.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "False":
            return str(condition.get("message") or "") if condition.get("reason") == REASON else None
    return None


def _nodes_fit(pipeline: dict[str, Any], quotas: Quotas) -> bool:
    nodes = ((pipeline.get("spec") or {}).get("resources") or {}).get("nodes", 1)
    return quotas.max_nodes_per_run is None or nodes <= quotas.max_nodes_per_run


def _names(pipelines: Iterable[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pipelines]


def to_wake(pipelines: list[dict[str, Any]], quotas: Quotas) -> list[str]:
    """The blocked pipelines of one namespace that may pass now, oldest first: within the pipeline and
    nodes caps, as many as there are free run slots. With no slot free, only those whose condition
    still names the pipeline cap (their pass restates the cause). Waking no more pipelines than there
    are free slots keeps their passes from racing each other past the cap."""
    cap = quotas.max_pipelines
    oldest = sorted(pipelines, key=_age) if cap is None else heapq.nsmallest(cap, pipelines, key=_age)
    blocked = [p for p in oldest if waiting(p, quotas)]
    if quotas.max_concurrent_runs is None:
        return _names(blocked)
    free = quotas.max_concurrent_runs - sum(active_runs(p) for p in pipelines)
    if free > 0:
        return _names(blocked[:free])
    return _names(p for p in blocked if not (_quota_message(p) or "").endswith(RUN_WAIT))
