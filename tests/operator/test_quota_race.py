"""The concurrent-runs cap holds when passes of one namespace decide at once: a pass that records a
run counts as one more active run for the namespace's other passes from its count until its status
write is in the watch cache (the work queue runs several passes together, on startup every one)."""

from __future__ import annotations

import copy
import itertools
import threading
from typing import Any

import pytest
from api.manifests import load_example
from kaizen_operator.catalog import load_catalog
from kaizen_operator.context import Context
from kaizen_operator.kube import ApiError
from kaizen_operator.quotas import active_runs
from kaizen_operator.reconciler import reconcile
from kaizen_operator.settings import load_settings
from kaizen_operator.watchcache import WatchCache

NS = "team"
PIPELINES = f"/apis/kaizen.dev/v1alpha1/namespaces/{NS}/finetunepipelines"


class Cluster:
    """Just enough of kaizen_operator.kube.Kube for a pass that starts a run: pipelines by path,
    every child created and never read back. `hold` names a pipeline whose status write waits for
    `release`, so another pass can run while it is under way."""

    def __init__(self, cache: WatchCache) -> None:
        self.cache = cache
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions = itertools.count(100)
        self.lock = threading.Lock()
        self.hold: str | None = None
        self.refuse = False  # the held write is refused as a Conflict
        self.writing = threading.Event()
        self.release = threading.Event()

    def add(self, name: str, created: str, *, active: int = 0) -> None:
        body = copy.deepcopy(load_example("finetune-sft-alpaca.yaml"))
        runs = [{"name": f"r{i}", "objectName": f"{name}-r{i}", "phase": "Running"} for i in range(active)]
        body["metadata"] = {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": created,
            "resourceVersion": str(next(self.versions)),
        }
        body["status"] = {"runs": runs} if runs else {}
        self.pipelines[f"{PIPELINES}/{name}"] = body
        self.cache.observed((NS, name), body)

    def get(self, path: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.pipelines.get(path)
            return copy.deepcopy(found) if found is not None else None

    def list(self, path: str, selector: str | None = None, *, metadata_only: bool = False) -> list[Any]:
        with self.lock:
            return [copy.deepcopy(p) for k, p in self.pipelines.items() if k.startswith(path)]

    def create(self, manifest: dict[str, Any]) -> bool:
        return True

    def delete(self, path: str) -> bool:
        return False

    def serves(self, group_version: str, plural: str) -> bool:
        return False

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        name = path.split("/")[-2]
        if name == self.hold:
            self.writing.set()
            assert self.release.wait(10)
            if self.refuse:
                raise ApiError(409, "Conflict")
        with self.lock:
            current = self.pipelines[path.removesuffix("/status")]
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict")
            current["status"] = {k: v for k, v in body["status"].items() if v is not None}
            current["metadata"]["resourceVersion"] = str(next(self.versions))
            return copy.deepcopy(current)

    def active(self) -> int:
        with self.lock:
            return sum(active_runs(p) for p in self.pipelines.values())


def context(cap: int | None) -> tuple[Context, Cluster]:
    settings = load_settings({} if cap is None else {"KAIZEN_QUOTA_MAX_CONCURRENT_RUNS": str(cap)})
    ctx = Context(kube=None, settings=settings, catalog=load_catalog(settings.catalog_path), key=b"k" * 32)  # type: ignore[arg-type]
    cluster = Cluster(ctx.pipelines)
    ctx.kube = cluster  # type: ignore[assignment]
    model = load_example("privatemodel.yaml")
    model["metadata"] |= {"namespace": NS, "uid": "uid-model", "resourceVersion": "1"}
    ctx.models.observed((NS, "support-assistant"), model)
    cluster.pipelines[f"/apis/kaizen.dev/v1alpha1/namespaces/{NS}/privatemodels/support-assistant"] = model
    return ctx, cluster


def both_at_once(ctx: Context, cluster: Cluster) -> list[BaseException]:
    """Cap 2, one run active, pipelines a and b new: a's pass is held in its status write (its runs
    recorded, not yet written) while b's pass decides. Returns what the passes raised."""
    cluster.add("busy", "2026-01-01T00:00:00Z", active=1)
    cluster.add("a", "2026-01-02T00:00:00Z")
    cluster.add("b", "2026-01-03T00:00:00Z")
    ctx.pipelines.listed()
    cluster.hold, raised = "a", []

    def run(name: str) -> None:
        try:
            reconcile(ctx, NS, name)
        except BaseException as err:  # pytest.fail too
            raised.append(err)

    first = threading.Thread(target=run, args=("a",))
    first.start()
    assert cluster.writing.wait(10), "a's pass reached its status write"
    second = threading.Thread(target=run, args=("b",))
    second.start()
    second.join(10)
    assert not second.is_alive(), "b's pass does not wait for a's write"
    cluster.release.set()
    first.join(10)
    return raised


def ready(cluster: Cluster, name: str) -> dict[str, Any]:
    found = cluster.get(f"{PIPELINES}/{name}")
    assert found is not None
    return {c["type"]: c for c in found["status"]["conditions"]}["Ready"]  # type: ignore[no-any-return]


def test_two_new_pipelines_deciding_at_once_stay_within_the_cap() -> None:
    """Of two pipelines created at once with one slot free, one starts its run: b's pass counts the
    run a's pass has recorded and not yet written."""
    ctx, cluster = context(cap=2)
    assert both_at_once(ctx, cluster) == []
    assert cluster.active() == 2, f"{cluster.active()} runs active; the namespace allows 2"
    blocked = ready(cluster, "b")
    assert blocked["reason"] == "QuotaExceeded" and "2 runs are active" in blocked["message"]
    assert ctx.pipelines.counted(NS, "b") == (ctx.pipelines.in_namespace(NS), {}), "a's write ended it"


def test_a_pass_whose_write_fails_frees_the_slot_it_reserved() -> None:
    ctx, cluster = context(cap=2)
    cluster.refuse = True
    raised = both_at_once(ctx, cluster)
    assert len(raised) == 1 and type(raised[0]).__name__ == "Conflict", raised
    assert cluster.active() == 1 and ready(cluster, "b")["reason"] == "QuotaExceeded"
    assert ctx.pipelines.counted(NS, "b")[1] == {}, "nothing stays reserved"
    reconcile(ctx, NS, "b")  # woken as a's status shows no run (to_wake); the slot is free
    assert cluster.active() == 2 and ready(cluster, "b")["status"] == "True"


def test_without_a_cap_no_pass_takes_the_namespace_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, cluster = context(cap=None)
    monkeypatch.setattr(WatchCache, "deciding", lambda *_: pytest.fail("a lock taken with no cap"))
    assert both_at_once(ctx, cluster) == []
    assert cluster.active() == 3
