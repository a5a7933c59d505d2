"""Namespace quotas and a schedule's concurrencyPolicy Allow / Replace, against the real control plane.

One operator serves the module, with caps of 2 pipelines, 2 concurrent runs and 1 node per run per
namespace; each test has its own namespace, so the caps are each test's own. A pipeline a cap blocks
gets its run as soon as the cap lets it (an older pipeline deleted, a run ended), not on a timer.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from ftp_support import (
    PIPELINES,
    conditions,
    fake,
    fire_cronjob,
    first_run_phase,
    get_pipeline,
    in_process_operator,
    jobs,
    message,
    operator_env,
    pipeline,
    prepare_namespace,
    runs,
    wait_pipeline,
)

pytestmark = pytest.mark.cluster
QUOTAS = {
    "KAIZEN_QUOTA_MAX_PIPELINES": "2",
    "KAIZEN_QUOTA_MAX_CONCURRENT_RUNS": "2",
    "KAIZEN_QUOTA_MAX_NODES_PER_RUN": "1",
}
LONG = fake(0, message(phase="Succeeded"), duration="120s")  # the workload keeps running
PROMPT_S = 10  # a blocked pipeline's run once the cap lets it: well within the 30 s it once polled at


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[Any]:
    with in_process_operator(control_plane, operator_env(control_plane) | QUOTAS) as runner:
        yield runner


@pytest.fixture
def ns(operator, control_plane, namespace) -> str:
    return prepare_namespace(operator, control_plane, namespace)


def create(cluster: Any, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.request("POST", PIPELINES.format(namespace), manifest)


def merge_patch(cluster: Any, namespace: str, name: str, body: dict[str, Any]) -> None:
    path = f"{PIPELINES.format(namespace)}/{name}"
    cluster.request("PATCH", path, body, content_type="application/merge-patch+json")


def active(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in runs(obj) if r["phase"] in ("Pending", "Running")]


def blocked_by_quota(obj: dict[str, Any]) -> bool:
    ready = conditions(obj).get("Ready", {})
    return ready.get("status") == "False" and ready.get("reason") == "QuotaExceeded"


def fire(cluster: Any, namespace: str, when: datetime) -> None:
    (cronjob,) = cluster.request("GET", f"/apis/batch/v1/namespaces/{namespace}/cronjobs")["items"]
    fire_cronjob(cluster, cronjob, when)


def scheduled(cluster: Any, namespace: str, name: str, policy: str) -> None:
    trigger = {"type": "schedule", "schedule": "0 3 * * *", "concurrencyPolicy": policy}
    create(cluster, namespace, pipeline(name, workload=LONG, trigger=trigger))
    wait_pipeline(cluster, namespace, name, lambda o: (o.get("status") or {}).get("nextScheduleTime"))


def day(n: int) -> datetime:
    return datetime(2026, 12, n, 3, 0, tzinfo=UTC)


def test_pipelines_beyond_the_cap_are_blocked(ns, control_plane) -> None:
    for name in ("first", "second", "third"):
        create(control_plane, ns, pipeline(name))
    for name in ("first", "second"):
        wait_pipeline(control_plane, ns, name, first_run_phase("Succeeded"))
    third = wait_pipeline(control_plane, ns, "third", blocked_by_quota)
    assert "allows 2 FineTunePipelines" in conditions(third)["Ready"]["message"]
    assert not runs(third) and not jobs(control_plane, ns, "kaizen.dev/pipeline=third")


def test_deleting_an_older_pipeline_lets_the_blocked_one_run(ns, control_plane) -> None:
    for name in ("first", "second", "third"):
        create(control_plane, ns, pipeline(name))
    for name in ("first", "second"):  # their runs end: only the pipeline cap holds the third back
        wait_pipeline(control_plane, ns, name, first_run_phase("Succeeded"))
    wait_pipeline(control_plane, ns, "third", blocked_by_quota)
    control_plane.request("DELETE", f"{PIPELINES.format(ns)}/first")
    wait_pipeline(control_plane, ns, "third", lambda o: bool(runs(o)), timeout=PROMPT_S)
    third = wait_pipeline(control_plane, ns, "third", first_run_phase("Succeeded"))
    assert conditions(third)["Ready"]["status"] == "True"
    assert jobs(control_plane, ns, "kaizen.dev/pipeline=third,kaizen.dev/component=train")


def test_a_run_ending_starts_the_waiting_pipelines_run(ns, control_plane) -> None:
    create(control_plane, ns, pipeline("busy", workload=LONG))
    wait_pipeline(control_plane, ns, "busy", lambda o: bool(runs(o)))
    merge_patch(control_plane, ns, "busy", {"spec": {"trigger": {"runToken": "second"}}})
    busy = wait_pipeline(control_plane, ns, "busy", lambda o: len(active(o)) == 2)
    create(control_plane, ns, pipeline("waiting", workload=LONG))
    waiting = wait_pipeline(control_plane, ns, "waiting", blocked_by_quota)
    assert "2 runs are active" in conditions(waiting)["Ready"]["message"] and not runs(waiting)
    merge_patch(
        control_plane, ns, "busy", {"metadata": {"annotations": {"kaizen.dev/cancel": runs(busy)[0]["name"]}}}
    )
    wait_pipeline(control_plane, ns, "waiting", lambda o: bool(runs(o)), timeout=PROMPT_S)
    waiting = wait_pipeline(control_plane, ns, "waiting", first_run_phase("Running"))
    assert conditions(waiting)["Ready"]["status"] == "True"
    busy = get_pipeline(control_plane, ns, "busy")
    assert runs(busy)[0]["phase"] == "Cancelled" and len(active(busy)) == 1, "2 runs: the cap holds"


def test_passes_deciding_at_once_share_no_free_slot(ns, control_plane) -> None:
    """One slot free, and at once a run asked for on one pipeline and a new pipeline created: both
    passes counted the same active runs, and both took the slot (3 runs under a cap of 2)."""
    create(control_plane, ns, pipeline("busy", workload=LONG))
    wait_pipeline(control_plane, ns, "busy", first_run_phase("Running"))
    changes = [
        lambda: create(control_plane, ns, pipeline("late", workload=LONG)),
        lambda: merge_patch(control_plane, ns, "busy", {"spec": {"trigger": {"runToken": "second"}}}),
    ]
    with ThreadPoolExecutor(2) as pool:  # both reach the operator at once
        list(pool.map(lambda change: change(), changes))
    busy = wait_pipeline(
        control_plane, ns, "busy", lambda o: conditions(o)["Ready"]["observedGeneration"] == 2
    )
    late = wait_pipeline(control_plane, ns, "late", lambda o: bool(runs(o)) or blocked_by_quota(o))
    assert len(active(busy)) + len(active(late)) == 2, (runs(busy), runs(late))
    assert blocked_by_quota(busy) != blocked_by_quota(late), "one of them got the slot"


def namespaced_pipeline_lists(cluster: Any) -> int:
    """LISTs of FineTunePipelines in a namespace the API server has answered (its /metrics): the
    operator's quota confirmations; kopf's watch lists cluster-wide."""
    api = cluster.api_client()
    method, url, headers, body, _ = api.param_serialize(
        "GET", "/metrics", header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"]
    )
    text = api.call_api(method, url, headers, body, _request_timeout=30).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and all(
            label in line for label in ('resource="finetunepipelines"', 'scope="namespace"', 'verb="LIST"')
        ):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def test_blocked_pipelines_share_the_list_that_confirms_their_count(ns, control_plane) -> None:
    """Each pass of a blocked pipeline once LISTed the namespace to confirm its count; now one LIST
    vouches for the namespace's cache, so blocked passes at once cost one LIST, not one each."""
    blocked = [f"late{i}" for i in range(6)]
    for name in ("first", "second"):
        create(control_plane, ns, pipeline(name))
        wait_pipeline(control_plane, ns, name, first_run_phase("Succeeded"))
    for name in blocked:
        create(control_plane, ns, pipeline(name))
    for name in blocked:
        wait_pipeline(control_plane, ns, name, blocked_by_quota)
    before = namespaced_pipeline_lists(control_plane)
    for name in blocked:  # a run asked for: each pipeline's pass checks the cap again
        merge_patch(control_plane, ns, name, {"spec": {"trigger": {"runToken": "again"}}})
    for name in blocked:
        wait_pipeline(
            control_plane,
            ns,
            name,
            lambda o: conditions(o)["Ready"]["observedGeneration"] == o["metadata"]["generation"],
        )
    lists = namespaced_pipeline_lists(control_plane) - before
    assert lists <= 1, f"{lists} LISTs for {len(blocked)} blocked passes"
    assert all(blocked_by_quota(get_pipeline(control_plane, ns, n)) for n in blocked)
    control_plane.request("DELETE", f"{PIPELINES.format(ns)}/first")  # the oldest blocked one may run
    wait_pipeline(control_plane, ns, "late0", lambda o: bool(runs(o)), timeout=PROMPT_S)


def test_a_run_on_more_nodes_than_allowed_is_blocked(ns, control_plane) -> None:
    create(control_plane, ns, pipeline("wide", resources={"gpusPerNode": 1, "nodes": 2}))
    wide = wait_pipeline(control_plane, ns, "wide", blocked_by_quota)
    assert "nodes is 2" in conditions(wide)["Ready"]["message"] and not runs(wide)
    assert not jobs(control_plane, ns, "kaizen.dev/pipeline=wide")


def test_allow_runs_concurrently_up_to_the_concurrent_runs_cap(ns, control_plane) -> None:
    scheduled(control_plane, ns, "allow", "Allow")
    fire(control_plane, ns, day(1))
    wait_pipeline(control_plane, ns, "allow", first_run_phase("Running"))
    fire(control_plane, ns, day(2))
    obj = wait_pipeline(
        control_plane, ns, "allow", lambda o: [r["phase"] for r in runs(o)] == ["Running", "Running"]
    )
    assert len(jobs(control_plane, ns, "kaizen.dev/pipeline=allow,kaizen.dev/component=train")) == 2
    fire(control_plane, ns, day(3))  # a third at once is over the namespace's cap of 2
    obj = wait_pipeline(control_plane, ns, "allow", lambda o: len(runs(o)) == 3)
    skipped = runs(obj)[0]
    assert skipped["phase"] == "Skipped" and skipped["reason"] == "QuotaExceeded"
    assert [r["phase"] for r in runs(obj)[1:]] == ["Running", "Running"]


def test_replace_cancels_the_active_run_and_starts_the_new_one(ns, control_plane) -> None:
    scheduled(control_plane, ns, "replace", "Replace")
    fire(control_plane, ns, day(1))
    obj = wait_pipeline(control_plane, ns, "replace", first_run_phase("Running"))
    old = runs(obj)[0]
    fire(control_plane, ns, day(2))
    obj = wait_pipeline(
        control_plane,
        ns,
        "replace",
        lambda o: [r["phase"] for r in runs(o)] == ["Running", "Cancelled"],
        timeout=90,
    )
    new, replaced = runs(obj)
    assert replaced["name"] == old["name"] and new["name"].endswith("_20261202030000")
    train = jobs(control_plane, ns, "kaizen.dev/pipeline=replace,kaizen.dev/component=train")
    live = [j for j in train if not j["metadata"].get("deletionTimestamp")]
    assert [j["metadata"]["labels"]["kaizen.dev/run"] for j in live] == [new["objectName"]], (
        "the replaced run's workload is deleted"
    )
