"""The operator outlives a watched CRD: the PyTorchJob CRD is removed and re-installed under it.

kopf watches PyTorchJobs (the children of multi-node runs). When their CRD goes, the watch stream
ends; a reconnect that reaches the API server before kopf's CRD observer has stopped the watcher is
answered 404. That must not end the operator: the other watchers and the reconciles go on, and once
the CRD is back its PyTorchJobs are followed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ftp_support import (
    PIPELINES,
    assert_alive,
    first_run_phase,
    kopf_operator,
    operator_env,
    pipeline,
    prepare_namespace,
    runs,
    set_pytorchjob_condition,
    wait_pipeline,
)
from kaizen_local.cluster import CrdRef, load_crds, third_party_crd_files
from kaizen_operator.handlers import watchguard

pytestmark = pytest.mark.cluster
CYCLES = 6  # at most; removals alternate: back after kopf's observer has caught up, or at once
OBSERVER_LAG_S = 6.0  # longer than a CRD takes to go, so its watch ends under a live watcher


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[Any]:
    """An operator whose CRD observer is late (as on a loaded machine) and whose watches reconnect
    every second, so the race is lost every time the CRD is gone for longer than a second: the
    PyTorchJob watcher reconnects, and is answered 404, before kopf has stopped it."""
    import kopf
    from kopf._core.reactor import observation

    prompt = observation.process_discovered_resource_event

    async def late(**kwargs: Any) -> None:
        await asyncio.sleep(OBSERVER_LAG_S)
        await prompt(**kwargs)

    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(observation, "process_discovered_resource_event", late)
        with kopf_operator(control_plane, operator_env(control_plane), patch, settings) as runner:
            yield runner


class Outages(logging.Handler):
    """The watch guard's reports of a watched resource not being served: each is one lost race."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.resources: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.resources.append(str(record.args[0]) if record.args else "")


@pytest.fixture
def outages() -> Iterator[Outages]:
    handler = Outages()
    logger = logging.getLogger(watchguard.__name__)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def ns(operator, control_plane, namespace) -> str:
    return prepare_namespace(operator, control_plane, namespace)


def test_removing_and_reinstalling_the_pytorchjob_crd(operator, ns, control_plane, outages) -> None:
    (crd,) = load_crds(f for f in third_party_crd_files() if f.name == "kubeflow.org_pytorchjobs.yaml")
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    try:
        for cycle in range(CYCLES):
            control_plane.request("DELETE", crd_path)
            deadline = time.monotonic() + 60
            while control_plane.request("GET", crd_path, missing_ok=True) is not None:
                assert time.monotonic() < deadline, "the CRD was not removed"
                time.sleep(0.1)
            time.sleep(0.0 if cycle % 2 else OBSERVER_LAG_S + 1)
            control_plane.install_crds([crd])
            control_plane.wait_established([CrdRef.of(crd)])
            assert_alive(operator)
            if "pytorchjobs.v1.kubeflow.org" in outages.resources and cycle % 2:
                break
        assert "pytorchjobs.v1.kubeflow.org" in outages.resources, "no reconnect was answered 404"
    finally:
        control_plane.install_crds([crd])
        control_plane.wait_established([CrdRef.of(crd)])

    # The pipelines' own watch and the reconciles went on.
    control_plane.request("POST", PIPELINES.format(ns), pipeline("single"))
    wait_pipeline(control_plane, ns, "single", first_run_phase("Succeeded"))

    # PyTorchJobs are followed again: a condition the "training operator" sets reaches the run.
    time.sleep(6)  # the operator's discovery cache (5 s) has seen the CRD back
    control_plane.request(
        "POST", PIPELINES.format(ns), pipeline("multi", resources={"gpusPerNode": 1, "nodes": 2})
    )
    obj = wait_pipeline(control_plane, ns, "multi", lambda o: runs(o) and runs(o)[0].get("jobName"))
    (run,) = runs(obj)
    assert run["jobKind"] == "PyTorchJob"
    job_path = f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs/{run['jobName']}"
    set_pytorchjob_condition(control_plane, job_path, "Running", "PyTorchJobRunning")
    wait_pipeline(control_plane, ns, "multi", first_run_phase("Running"))
    set_pytorchjob_condition(control_plane, job_path, "Succeeded", "PyTorchJobSucceeded")
    wait_pipeline(control_plane, ns, "multi", first_run_phase("Succeeded"))
    assert_alive(operator)
