"""A watch restart hides the deletions made in its gap: the pipeline handlers re-check the blocked
pipelines of the namespaces its listing delivers, which a deletion only the LIST shows lets pass."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kaizen_operator.context import Context
from kaizen_operator.handlers import finetune
from kaizen_operator.settings import OperatorSettings, Quotas
from kaizen_operator.workqueue import WorkQueue
from test_quotas import DAY1, DAY2, DAY3, PIPELINE_CAP, Listing, pipeline


def own(cache: Any, item: dict[str, Any], version: str) -> dict[str, Any]:
    """`item` as the operator's own status write left it, delivered by the watch."""
    item = copy.deepcopy(item)
    item["metadata"]["resourceVersion"] = version
    key = (item["metadata"]["namespace"], item["metadata"]["name"])
    cache.wrote(key, item)
    cache.observed(key, item)
    return item


async def listing_event(item: dict[str, Any]) -> None:
    """What kopf does for each object of a (re)listing: the indexer, then the event handler."""
    await finetune.pipeline_cache(body=item)  # type: ignore[arg-type]
    await finetune.pipeline_event(event={"type": None, "object": item}, meta=item["metadata"])  # type: ignore[arg-type]


def run_restart(
    monkeypatch: pytest.MonkeyPatch, quotas: Quotas, api: Listing, *listed: dict[str, Any]
) -> list[Hashable]:
    """Deliver a restart's listing of `listed` to the handlers; returns the pipelines passed."""
    monkeypatch.setattr(finetune, "RELIST_SETTLE_S", 0.05, raising=False)
    passes: list[Hashable] = []

    async def work(key: Hashable) -> float | None:
        if not isinstance(key, tuple):  # a namespace's check, not a pipeline's reconcile
            return await finetune._work(key)
        passes.append(key)
        return None

    async def scenario() -> None:
        assert finetune.RUNTIME is not None
        finetune.RUNTIME.queue = WorkQueue(work, workers=2, settle_s=0.01)
        finetune.RUNTIME.queue.start()
        for item in listed:
            await listing_event(item)
        await asyncio.sleep(0.3)
        await finetune.RUNTIME.queue.stop()

    asyncio.run(scenario())
    return passes


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(quotas: Quotas, api: Listing) -> finetune.Runtime:
        settings = OperatorSettings(quotas=quotas)
        ctx = Context(kube=api, settings=settings, catalog=None, key=b"k" * 32)  # type: ignore[arg-type]
        runtime = finetune.Runtime(ctx, None, [], ThreadPoolExecutor(2))  # type: ignore[arg-type]
        monkeypatch.setattr(finetune, "RUNTIME", runtime)
        return runtime

    return make


def test_a_pipeline_deleted_during_a_watch_restart_lets_the_blocked_pass(
    runtime: Any, monkeypatch: Any
) -> None:
    """`b` is over the pipeline cap (no timer re-checks it), and its newest version is the operator's
    own write: the restart's listing of it alone would not enqueue it. `a` was deleted in the gap."""
    quotas = Quotas(max_pipelines=1)
    a, b = pipeline("a", DAY1), pipeline("b", DAY2, ready=PIPELINE_CAP)
    api = Listing([b])
    rt = runtime(quotas, api)
    cache = rt.ctx.pipelines
    cache.observed(("ns", "a"), a)
    b = own(cache, b, "7")
    cache.listed()
    assert run_restart(monkeypatch, quotas, api, b) == [("ns", "b")]
    assert api.requests == 1 and [p["metadata"]["name"] for p in cache.in_namespace("ns")] == ["b"]


def test_a_listing_with_nothing_deleted_costs_one_list_and_wakes_nothing(
    runtime: Any, monkeypatch: Any
) -> None:
    """The namespace's blocked pipelines share one LIST; a namespace with none a deletion could let
    pass costs none."""
    quotas = Quotas(max_pipelines=1, max_nodes_per_run=1)
    items = [
        pipeline("a", DAY1),
        pipeline("b", DAY2, ready=PIPELINE_CAP),
        pipeline("c", DAY3, ready=PIPELINE_CAP),
    ]
    api = Listing(items)
    rt = runtime(quotas, api)
    cache = rt.ctx.pipelines
    listed = [own(cache, item, str(5 + i)) for i, item in enumerate(items)]
    cache.listed()
    assert run_restart(monkeypatch, quotas, api, *listed) == []
    assert api.requests == 1
    free, wide = (
        pipeline("d", DAY1),
        pipeline("e", DAY2, ready=("QuotaExceeded", "spec.resources.nodes is 2")),
    )
    wide["spec"]["resources"]["nodes"] = 2  # over the nodes cap: no deletion lets it pass
    for item in (free, wide):
        item["metadata"]["namespace"] = "other"
    listed = [own(cache, free, "9"), own(cache, wide, "10")]
    assert run_restart(monkeypatch, quotas, api, *listed) == [] and api.requests == 1


@pytest.mark.parametrize(("argv", "apart"), [(["-n", "a", "-n", "b"], True), ([], False)])
def test_the_operator_tells_its_handlers_whether_kopf_watches_each_namespace_apart(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], apart: bool
) -> None:
    """`kaizen-operator --namespace ...` runs one kopf watch per namespace: its pipeline cache then
    voids one namespace's quota confirmation per listing (`WatchCache(watch_per_namespace=...)`)."""
    import gc

    import kopf
    from kaizen_operator import main

    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(gc, "freeze", lambda: None)
    monkeypatch.setattr(kopf, "run", lambda **kwargs: runs.append(kwargs))
    assert main.main(argv) == 0
    (run,) = runs
    assert run["clusterwide"] is not apart
    assert run["memo"][finetune.WATCH_PER_NAMESPACE] is apart
