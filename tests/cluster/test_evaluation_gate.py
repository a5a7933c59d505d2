"""Acceptance: the evaluation gate. One pipeline's version passes its threshold and is promoted, the
other's fails and is not; both runs stay Succeeded.

The whole path is real (the pipeline controller creates the gate EvalJob, the EvalJob controller
runs it, its pod ends through kwok) except the evaluation itself: the gate pod's termination message
carries the scores (the pipeline's `kaizen.dev/fake-pods` "gate" entry), as `kaizen-runner eval`
would write them. The registry's readiness of the new version is set by hand, as its storage scan
would set it once the version's files are there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from ftp_support import (
    GATE,
    MODELS,
    PIPELINES,
    conditions,
    fake,
    kopf_operator,
    make_version_ready,
    message,
    operator_env,
    pipeline,
    private_model,
    restrict,
    runs,
    wait_pipeline,
)
from kaizen_api.base import GROUP, VERSION

pytestmark = pytest.mark.cluster
EVALJOBS = f"/apis/{GROUP}/{VERSION}/namespaces/{{}}/evaljobs"


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        env = operator_env(control_plane)
        with kopf_operator(control_plane, env, patch) as runner:
            yield runner


@pytest.fixture
def ns(operator, control_plane, namespace) -> str:
    restrict(control_plane, namespace)
    for model in ("good", "weak"):
        control_plane.request("POST", MODELS.format(namespace), private_model(model))
    return namespace


def gated(name: str, model: str, rouge: float) -> dict[str, Any]:
    body = pipeline(name, output={"privateModel": model}, evaluation=GATE)
    fakes = json.loads(body["metadata"]["annotations"]["kaizen.dev/fake-pods"])
    scores = {"rougeL": rouge}
    fakes["gate"] = fake(0, message(phase="Succeeded", results=scores, resultsUri=f"s3://data/{name}"))
    body["metadata"]["annotations"]["kaizen.dev/fake-pods"] = json.dumps(fakes)
    return body


def evaluation(obj: dict[str, Any]) -> dict[str, Any]:
    found = runs(obj)
    return (found[0].get("evaluation") or {}) if found else {}


def test_one_version_passes_the_gate_and_is_promoted_one_fails_and_is_not(ns, control_plane) -> None:
    cases = {"gate-pass": ("good", 0.55), "gate-fail": ("weak", 0.31)}
    for name, (model, rouge) in cases.items():
        control_plane.request("POST", PIPELINES.format(ns), gated(name, model, rouge))
    for name, (model, _) in cases.items():
        waiting = wait_pipeline(
            control_plane, ns, name, lambda o: evaluation(o).get("state") == "WaitingForVersion"
        )
        assert runs(waiting)[0]["phase"] == "Succeeded"
        assert conditions(waiting)["Promoted"]["status"] == "Unknown"
        make_version_ready(control_plane, ns, model, runs(waiting)[0]["outputVersion"])

    decided = {
        name: wait_pipeline(control_plane, ns, name, lambda o: evaluation(o).get("promoted") is not None, 90)
        for name in cases
    }
    passed, failed = decided["gate-pass"], decided["gate-fail"]
    for obj in decided.values():
        run = runs(obj)[0]
        assert run["phase"] == "Succeeded" and conditions(obj)["Succeeded"]["status"] == "True"
        job = control_plane.request("GET", f"{EVALJOBS.format(ns)}/{run['objectName']}-eval")
        assert job["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
        assert job["spec"]["model"]["privateModel"]["version"] == run["outputVersion"]
        assert job["status"]["phase"] == "Succeeded"

    ok = evaluation(passed)
    assert (ok["state"], ok["promoted"], ok["results"]) == ("Promoted", True, {"rougeL": 0.55})
    cond = conditions(passed)["Promoted"]
    assert cond["status"] == "True" and cond["observedGeneration"] == passed["metadata"]["generation"]
    bad = evaluation(failed)
    assert (bad["state"], bad["promoted"], bad["results"]) == ("ThresholdNotMet", False, {"rougeL": 0.31})
    cond = conditions(failed)["Promoted"]
    assert (cond["status"], cond["reason"]) == ("False", "ThresholdNotMet")
    assert "rougeL >= 0.4: got 0.31" in cond["message"]

    promoted = {}
    for name, (model, _) in cases.items():
        version = runs(decided[name])[0]["outputVersion"]
        entries = control_plane.request("GET", f"{MODELS.format(ns)}/{model}")["status"]["versions"]
        promoted[name] = next(v for v in entries if v["name"] == version).get("promoted")
    assert promoted == {"gate-pass": True, "gate-fail": None}
