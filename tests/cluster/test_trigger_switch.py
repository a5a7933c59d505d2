"""Switching a pipeline's trigger type, against the real control plane (pods "run" by kwok): a
schedule pipeline switched to manual is not new, so it starts a run only when its runToken changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from ftp_support import (
    PIPELINES,
    first_run_phase,
    get_pipeline,
    in_process_operator,
    pipeline,
    prepare_namespace,
    runs,
    wait_pipeline,
)

pytestmark = pytest.mark.cluster
SCHEDULE = {"type": "schedule", "schedule": "0 3 * * *"}
SETTLE_S = 3.0  # a run the operator would start is on record well within this


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[Any]:
    with in_process_operator(control_plane) as runner:
        yield runner


@pytest.fixture
def ns(operator, control_plane, namespace) -> str:
    return prepare_namespace(operator, control_plane, namespace)


def patch_trigger(cluster: Any, namespace: str, name: str, trigger: dict[str, Any]) -> int:
    """Merge `trigger` into spec.trigger; returns the new generation."""
    body = {"spec": {"trigger": trigger}}
    obj = cluster.request(
        "PATCH", f"{PIPELINES.format(namespace)}/{name}", body, content_type="application/merge-patch+json"
    )
    return int(obj["metadata"]["generation"])


def settled(cluster: Any, namespace: str, name: str, generation: int) -> dict[str, Any]:
    """The pipeline once a pass has seen `generation`, and a while later (a run would be on record)."""
    wait_pipeline(cluster, namespace, name, lambda o: o["status"].get("observedGeneration") == generation)
    time.sleep(SETTLE_S)
    return get_pipeline(cluster, namespace, name)


def test_schedule_switched_to_manual_runs_only_on_a_new_token(ns, control_plane) -> None:
    control_plane.request("POST", PIPELINES.format(ns), pipeline("switch", trigger=SCHEDULE))
    wait_pipeline(control_plane, ns, "switch", lambda o: (o.get("status") or {}).get("nextScheduleTime"))

    generation = patch_trigger(control_plane, ns, "switch", {"type": "manual", "schedule": None})
    obj = settled(control_plane, ns, "switch", generation)
    assert not runs(obj), "switching the trigger type to manual starts no run"
    assert obj["status"]["lastRunToken"] == ""

    patch_trigger(control_plane, ns, "switch", {"runToken": "go"})
    obj = wait_pipeline(control_plane, ns, "switch", first_run_phase("Succeeded"))
    time.sleep(SETTLE_S)
    obj = get_pipeline(control_plane, ns, "switch")
    assert [r.get("token") for r in runs(obj)] == ["go"], "a new token starts exactly one run"

    # The reverse: back to schedule starts no manual run, and neither does switching to manual again.
    generation = patch_trigger(control_plane, ns, "switch", SCHEDULE)
    assert len(runs(settled(control_plane, ns, "switch", generation))) == 1
    generation = patch_trigger(control_plane, ns, "switch", {"type": "manual", "schedule": None})
    assert len(runs(settled(control_plane, ns, "switch", generation))) == 1


def test_a_manual_pipeline_created_suspended_starts_its_first_run_when_resumed(ns, control_plane) -> None:
    trigger = {"type": "manual", "suspend": True}
    control_plane.request("POST", PIPELINES.format(ns), pipeline("later", trigger=trigger))
    wait_pipeline(control_plane, ns, "later", lambda o: (o.get("status") or {}).get("observedGeneration"))
    time.sleep(SETTLE_S)
    assert not runs(get_pipeline(control_plane, ns, "later")), "suspended: no run"

    patch_trigger(control_plane, ns, "later", {"suspend": False})
    obj = wait_pipeline(control_plane, ns, "later", first_run_phase("Succeeded"))
    assert [r.get("token") for r in runs(obj)] == [""]
