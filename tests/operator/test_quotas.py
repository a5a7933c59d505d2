"""Quota arithmetic: the oldest pipelines keep their place, active runs count across the namespace,
counted from the watch cache (a LIST only before the watch's initial listing is in, and to confirm a
count that blocks, shared by the namespace's passes), and which blocked pipelines a change of the
namespace lets pass."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api.manifests import load_example
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import RunStatus
from kaizen_operator import quotas as quota_module
from kaizen_operator.quotas import RUN_WAIT, concurrent_runs_blocker, pipeline_blocker, to_wake
from kaizen_operator.settings import Quotas
from kaizen_operator.triggers import holding_slots
from kaizen_operator.watchcache import WatchCache


class Listing:
    """Stands in for Kube.list (the quota code reads nothing else) and counts the requests."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.requests = 0

    def list(
        self, path: str, selector: str | None = None, metadata_only: bool = False
    ) -> list[dict[str, Any]]:
        self.requests += 1
        return self.items


def pipeline(name: str, created: str, *phases: str, ready: tuple[str, str] | None = None) -> dict[str, Any]:
    """`ready`: a Ready=False condition's (reason, message)."""
    runs = [{"name": f"r{i}", "objectName": f"o{i}", "phase": p} for i, p in enumerate(phases)]
    status: dict[str, Any] = {"runs": runs}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "False", "reason": ready[0], "message": ready[1]}]
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created, "resourceVersion": "1"},
        "spec": {"resources": {"nodes": 1}},
        "status": status,
    }


def cached(*items: dict[str, Any]) -> WatchCache:
    cache = WatchCache()
    for item in items:
        cache.observed(("ns", item["metadata"]["name"]), item)
    cache.listed()
    return cache


def run_status(phase: str) -> RunStatus:
    return RunStatus(name="ft_m_20260101000000", object_name="o", trigger="manual", phase=phase)


SPEC = FineTunePipelineSpec.model_validate(load_example("finetune-sft-alpaca.yaml")["spec"])
DAY1, DAY2, DAY3 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"
PIPELINE_CAP = ("QuotaExceeded", "this namespace allows 1 FineTunePipelines; 2 exist and ...")
RUNS_CAP = ("QuotaExceeded", f"2 runs are active in this namespace, which allows 2 at once; {RUN_WAIT}")


def test_pipeline_cap_is_by_age_and_counts_from_the_cache() -> None:
    items = [pipeline("b", DAY2), pipeline("a", DAY1)]
    cache, api = cached(*items), Listing(items)
    quotas = Quotas(max_pipelines=1)
    assert pipeline_blocker(cache, api, items[1], SPEC, quotas) is None  # type: ignore[arg-type]
    assert api.requests == 0, "the cache answered"
    blocked = pipeline_blocker(cache, api, items[0], SPEC, quotas)  # type: ignore[arg-type]
    assert blocked is not None and blocked.reason == "QuotaExceeded" and "2 exist" in blocked.message
    assert api.requests == 1, "a LIST confirmed the count that blocks"
    cache.deleted(("ns", "a"))
    assert pipeline_blocker(cache, api, items[0], SPEC, quotas) is None  # type: ignore[arg-type]


def test_before_the_listing_is_in_the_namespace_is_listed() -> None:
    items = [pipeline("b", DAY2), pipeline("a", DAY1, "Running")]
    cache, api = WatchCache(), Listing(items)
    cache.observed(("ns", "b"), items[0])  # the listing has delivered b, not yet a
    blocked = pipeline_blocker(cache, api, items[0], SPEC, Quotas(max_pipelines=1))  # type: ignore[arg-type]
    assert blocked is not None and api.requests == 1
    quotas = Quotas(max_concurrent_runs=1)
    assert concurrent_runs_blocker(cache, api, items[0], [], quotas) is not None  # type: ignore[arg-type]
    assert api.requests == 2


def test_nodes_per_run() -> None:
    spec = SPEC.model_copy(update={"resources": SPEC.resources.model_copy(update={"nodes": 3})})
    blocked = pipeline_blocker(cached(), Listing([]), pipeline("a", "x"), spec, Quotas(max_nodes_per_run=2))  # type: ignore[arg-type]
    assert blocked is not None and "nodes" in blocked.message


def test_concurrent_runs_count_across_pipelines() -> None:
    a, b = pipeline("a", DAY1, "Running", "Succeeded"), pipeline("b", DAY2, "Pending")
    cache, api = cached(a, b), Listing([a, b])
    mine = pipeline("c", DAY3)
    assert concurrent_runs_blocker(cache, api, mine, [], Quotas(max_concurrent_runs=3)) is None  # type: ignore[arg-type]
    assert concurrent_runs_blocker(cache, api, mine, [], Quotas()) is None  # type: ignore[arg-type]
    assert api.requests == 0
    blocked = concurrent_runs_blocker(cache, api, mine, [], Quotas(max_concurrent_runs=2))  # type: ignore[arg-type]
    assert blocked is not None and blocked.reason == "QuotaExceeded" and blocked.message.endswith(RUN_WAIT)
    assert api.requests == 1


def test_the_pass_counts_its_own_runs_as_it_has_them() -> None:
    """Not as cached: the pipeline's runs recorded earlier in the same pass (a second firing) count."""
    items = [pipeline("a", DAY1, "Running"), pipeline("b", DAY2, "Running")]
    cache, api = cached(*items), Listing(items)
    quotas = Quotas(max_concurrent_runs=2)
    b = pipeline("b", DAY2, "Running")
    assert concurrent_runs_blocker(cache, api, b, [run_status("Succeeded")], quotas) is None  # type: ignore[arg-type]
    assert concurrent_runs_blocker(cache, api, b, [run_status("Pending")], quotas) is not None  # type: ignore[arg-type]


def test_replace_frees_the_slots_of_the_runs_it_cancels() -> None:
    """A firing under concurrencyPolicy Replace is not refused for the slot of the run it replaces."""
    cache, api = cached(pipeline("a", DAY1, "Running")), Listing([pipeline("a", DAY1, "Running")])
    quotas = Quotas(max_concurrent_runs=2)
    b = pipeline("b", DAY2, "Running")
    mine = [run_status("Running"), run_status("Succeeded")]
    assert concurrent_runs_blocker(cache, api, b, holding_slots(mine, "replace"), quotas) is None  # type: ignore[arg-type]
    assert concurrent_runs_blocker(cache, api, b, holding_slots(mine, "start"), quotas) is not None  # type: ignore[arg-type]


def test_the_operators_own_write_counts_before_the_watch_shows_it() -> None:
    a = pipeline("a", DAY1)
    written = pipeline("a", DAY1, "Pending") | {"metadata": a["metadata"] | {"resourceVersion": "2"}}
    cache, api = cached(a), Listing([written])
    cache.wrote(("ns", "a"), written)  # the pass that recorded a's run; its watch event is on its way
    quotas = Quotas(max_concurrent_runs=1)
    assert concurrent_runs_blocker(cache, api, pipeline("b", DAY2), [], quotas) is not None  # type: ignore[arg-type]


def test_a_deletion_wakes_the_pipeline_it_lets_in() -> None:
    quotas = Quotas(max_pipelines=2, max_concurrent_runs=2)
    a, b = pipeline("a", DAY1, "Succeeded"), pipeline("b", DAY2, "Succeeded")
    c = pipeline("c", DAY3, ready=PIPELINE_CAP)
    assert to_wake([a, b, c], quotas) == [], "still beyond the cap"
    assert to_wake([b, c], quotas) == ["c"]
    full = [pipeline("b", DAY2, "Running", "Running"), c]
    assert to_wake(full, quotas) == ["c"], "no slot free: woken to say it now waits for one"
    waiting = pipeline("c", DAY3, ready=RUNS_CAP)
    assert to_wake([full[0], waiting], quotas) == [], "its condition says so already"


def test_a_run_that_ends_wakes_as_many_waiters_as_slots_free_oldest_first() -> None:
    quotas = Quotas(max_concurrent_runs=2, max_nodes_per_run=1)
    busy = pipeline("a", DAY1, "Running", "Succeeded")
    waiters = [pipeline(n, d, ready=RUNS_CAP) for n, d in (("d", DAY3), ("c", DAY2))]
    wide = pipeline("b", DAY1, ready=RUNS_CAP)
    wide["spec"]["resources"]["nodes"] = 2  # over the nodes cap: only its own change helps
    other = pipeline("e", DAY1, ready=("ModelNotReady", "..."))
    assert to_wake([busy, wide, other, *waiters], quotas) == ["c"]
    assert to_wake([wide, other, *waiters], quotas) == ["c", "d"]
    assert to_wake([pipeline("a", DAY1, "Running", "Pending"), *waiters], quotas) == []


def test_the_blocked_passes_of_a_namespace_share_the_list_that_confirms_their_count() -> None:
    """One LIST vouches for the namespace's cache: the next passes it blocks (pipeline cap or run
    slots) count from the cache, until a listing event (a watch restart may hide deletions)."""
    items = [pipeline("a", DAY1, "Running"), *(pipeline(n, DAY2) for n in "bcde")]
    cache, api = cached(*items), Listing(items)
    for item in items[1:]:
        assert pipeline_blocker(cache, api, item, SPEC, Quotas(max_pipelines=1)) is not None  # type: ignore[arg-type]
        assert concurrent_runs_blocker(cache, api, item, [], Quotas(max_concurrent_runs=1)) is not None  # type: ignore[arg-type]
    assert api.requests == 1, "eight blocked passes, one LIST"
    cache.relisted("ns")
    assert pipeline_blocker(cache, api, items[1], SPEC, Quotas(max_pipelines=1)) is not None  # type: ignore[arg-type]
    assert api.requests == 2, "a listing event: the next blocked pass confirms again"


def test_passes_blocked_at_once_wait_for_one_list() -> None:
    items = [pipeline("a", DAY1), *(pipeline(f"p{i}", DAY2) for i in range(8))]
    cache = cached(*items)

    class Slow(Listing):
        def list(self, path: str, selector: str | None = None, metadata_only: bool = False) -> list[Any]:
            time.sleep(0.2)
            return super().list(path, selector, metadata_only)

    api = Slow(items)
    with ThreadPoolExecutor(8) as pool:
        blocked = list(
            pool.map(lambda p: pipeline_blocker(cache, api, p, SPEC, Quotas(max_pipelines=1)), items[1:])  # type: ignore[arg-type]
        )
    assert all(blocked) and api.requests == 1


def test_a_ghost_a_watch_restart_left_does_not_block() -> None:
    """`a` was deleted while the watch restarted: the cache still holds it. The restart's listing
    events void the namespace's earlier LIST, so the count that would block is LISTed again."""
    a, b = pipeline("a", DAY1), pipeline("b", DAY2)
    cache, api = cached(a, b), Listing([a, b])
    quotas = Quotas(max_pipelines=1)
    assert pipeline_blocker(cache, api, b, SPEC, quotas) is not None  # type: ignore[arg-type]
    api.items = [b]  # deleted during the watch's gap: no DELETED event
    assert pipeline_blocker(cache, api, b, SPEC, quotas) is not None, "no listing event yet"  # type: ignore[arg-type]
    cache.relisted("ns")  # the restart's listing delivers b (and never a)
    assert pipeline_blocker(cache, api, b, SPEC, quotas) is None  # type: ignore[arg-type]
    assert cache.in_namespace("ns") == [b], "the LIST dropped the ghost"


def test_a_confirmation_lasts_a_short_while(monkeypatch: Any) -> None:
    """Bounded in time too: a restart that delivered no object at all (every pipeline gone) sends no
    listing event."""
    a, b = pipeline("a", DAY1), pipeline("b", DAY2)
    cache, api = cached(a, b), Listing([a, b])
    monkeypatch.setattr(quota_module, "CONFIRMED_S", 0.0)
    for _ in range(2):
        assert pipeline_blocker(cache, api, b, SPEC, Quotas(max_pipelines=1)) is not None  # type: ignore[arg-type]
    assert api.requests == 2


def written(name: str, created: str, *phases: str) -> dict[str, Any]:
    """The body of the pipeline's status write that recorded runs (o0, o1, ...)."""
    body = pipeline(name, created, *phases)
    return body | {"metadata": body["metadata"] | {"resourceVersion": "2"}}


def test_a_reserved_run_counts_once_when_the_watch_shows_its_write_first() -> None:
    """a's pass recorded run o0 and wrote it; the watch delivered that write before the pass handled
    the answer (which ends the reservation). b's count, in between, holds o0 in a's body and in a's
    reservation: one run, not two (two would block b, and skip a scheduled firing of b)."""
    cache = cached(pipeline("a", DAY1))
    cache.reserve(("ns", "a"), {"o0"})
    cache.observed(("ns", "a"), written("a", DAY1, "Pending"))
    api = Listing([written("a", DAY1, "Pending")])
    assert concurrent_runs_blocker(cache, api, pipeline("b", DAY2), [], Quotas(max_concurrent_runs=2)) is None  # type: ignore[arg-type]
    blocked = concurrent_runs_blocker(cache, api, pipeline("b", DAY2), [], Quotas(max_concurrent_runs=1))  # type: ignore[arg-type]
    assert blocked is not None and blocked.message.startswith("1 runs are active")


def test_before_the_listing_a_run_written_during_the_list_still_counts() -> None:
    """Before the watch's initial listing is in the namespace is LISTed. a's pass holds run o0 reserved
    and its write lands just after the LIST's snapshot, its reservation ending before the LIST's
    answer is read: the run is in neither, unless the reservations are read before the LIST."""
    cache, a = WatchCache(), pipeline("a", DAY1)
    cache.reserve(("ns", "a"), {"o0"})

    class WrittenDuring(Listing):
        def list(self, path: str, selector: str | None = None, metadata_only: bool = False) -> list[Any]:
            snapshot = super().list(path, selector, metadata_only)
            cache.wrote(("ns", "a"), written("a", DAY1, "Pending"))
            return snapshot

    quotas = Quotas(max_concurrent_runs=1)
    blocked = concurrent_runs_blocker(cache, WrittenDuring([a]), pipeline("b", DAY2), [], quotas)  # type: ignore[arg-type]
    assert blocked is not None, "one run active, one allowed: b waits"
    landed = Listing([written("a", DAY1, "Pending")])  # and once the LIST holds it, it counts once
    cache.reserve(("ns", "a"), {"o0"})
    two = Quotas(max_concurrent_runs=2)
    assert concurrent_runs_blocker(cache, landed, pipeline("b", DAY2), [], two) is None  # type: ignore[arg-type]


def test_a_listing_voids_the_confirmations_its_watch_covers() -> None:
    """Watching named namespaces (one watch each), a listing of another namespace leaves this one's
    LIST in force; watching the whole cluster (one watch), any listing may follow the restart that
    hid this namespace's deletions."""
    items = [pipeline("a", DAY1), pipeline("b", DAY2)]
    for per_namespace, lists in ((True, 1), (False, 2)):
        cache, api = WatchCache(watch_per_namespace=per_namespace), Listing(items)
        for item in items:
            cache.observed(("ns", item["metadata"]["name"]), item)
        cache.listed()
        assert pipeline_blocker(cache, api, items[1], SPEC, Quotas(max_pipelines=1)) is not None  # type: ignore[arg-type]
        cache.relisted("other")
        assert pipeline_blocker(cache, api, items[1], SPEC, Quotas(max_pipelines=1)) is not None  # type: ignore[arg-type]
        assert api.requests == lists, f"watch per namespace: {per_namespace}"
        cache.relisted("ns")
        assert pipeline_blocker(cache, api, items[1], SPEC, Quotas(max_pipelines=1)) is not None  # type: ignore[arg-type]
        assert api.requests == lists + 1, "its own namespace's listing voids it either way"
